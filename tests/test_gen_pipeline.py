"""Synthetic data in a build: the generate step, the quality gate, the manifest, with/without, the data card.

The build runs for real on the shapes folder; only the image generator is swapped for one that draws
shapes (a mock: the real generators have their own tests in test_generators.py), so the teacher has
something it can agree with, and some squares and copies of pool images it must reject.
"""

from __future__ import annotations

import argparse
import json
import shutil

import numpy as np
import pytest
import torch

from agent.pipeline import Run, create_run, execute
from agent.runs import RunStore
from generators.base import GeneratedFile, GenerateRequest, GenerateResult, Generator
from knowledge.errors import NanofactoryError

REQUEST = "tells apart circles, squares, triangles and everything else on an nRF52840 with 64 KB RAM"
CANDIDATES = 24  # every 6th a square (the teacher must disagree), every 6th a copy of a pool circle


class ShapesGenerator(Generator):
    name = "test-shapes"
    modality = "image"

    def __init__(self, pool_circles):
        super().__init__(None)
        self.pool_circles = pool_circles

    def generate(self, request: GenerateRequest, out_dir, progress: bool = False) -> GenerateResult:
        from conftest import _shape_image
        from PIL import Image

        out_dir.mkdir(parents=True, exist_ok=True)
        rng = np.random.default_rng(request.seed + 100)
        files = []
        for i in range(request.count):
            path = out_dir / f"{i:03d}.png"
            kind = "copy" if i % 6 == 4 else "square" if i % 6 == 5 else "circle"
            if kind == "copy":
                shutil.copy(self.pool_circles[i // 6], path)
            else:
                Image.fromarray(_shape_image(kind, rng)).save(path)
            files.append(GeneratedFile(path, {"generator": self.name, "kind": kind}))
        return GenerateResult(self.name, request, files)


def _plan(spec, pool, **generate):
    from agent.data import native_shape
    from agent.plan import GenerateStep, default_input, offline_plan
    from tools.train import TrainConfig

    plan = offline_plan(spec, default_input(spec, *native_shape(pool)), train=TrainConfig(epochs=3),
                        generate=GenerateStep.model_validate(generate))
    # the compiler's checks have their own tests; here they would only add minutes
    plan.steps = [s.model_copy(update={"verify": False}) if s.kind == "compile" else s for s in plan.steps]
    return plan


@pytest.fixture(scope="module")
def built(shapes_data, tmp_path_factory):
    from agent.data import load_pool
    from agent.parse import spec_from_request
    from agent.spec import DataSpec, PoolSource
    from generators import synthesize

    data = DataSpec(pool=[PoolSource(kind="folder", path=shapes_data["pool"])], examples_dir=shapes_data["examples"],
                    test=PoolSource(kind="folder", path=shapes_data["test"]))
    spec = spec_from_request(REQUEST, data)
    circles = sorted(shapes_data["pool"].rglob("circle-*.png"))
    plan = _plan(spec, load_pool(spec), mode="on", classes=["circle"], candidates_per_class=CANDIDATES,
                 gate={"min_keep": CANDIDATES, "duplicate_similarity": 0.99})  # only the copies are duplicates
    store = RunStore(tmp_path_factory.mktemp("runs"))
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(synthesize, "image_generator",
                      lambda *a, **k: (ShapesGenerator(circles), {"generator": "test-shapes"}))
        run = create_run(spec, plan, store)
        metrics = execute(run, store, show_bars=False)
    return run, metrics


@pytest.mark.slow
def test_generate_step_gates_and_records(built):
    run, _ = built
    generated = run.result("generate")
    assert generated["classes"] == ["circle"] and generated["generated"] == CANDIDATES
    circle = generated["per_class"]["circle"]
    assert circle["rejected"]["near-duplicate of the pool"] == CANDIDATES // 6  # the copies, all of them
    assert circle["rejected"].get("teacher disagrees", 0) >= CANDIDATES // 6 - 1  # the squares, nearly all
    assert circle["kept"] >= CANDIDATES // 2 and generated["kept"] == circle["kept"]
    assert generated["rejection_rate"] == pytest.approx(1 - circle["kept"] / CANDIDATES, abs=1e-4)
    gate = [json.loads(x) for x in (run.dir / "synthetic" / "gate.jsonl").read_text().splitlines()]
    assert len(gate) == CANDIDATES
    assert all(not g["kept"] for g in gate if g["provenance"]["kind"] == "copy")
    with np.load(run.dir / "data" / "synthetic.npz") as z:
        assert z["images"].shape == (circle["kept"], 64, 64, 3) and (z["labels"] == 0).all()
        assert (z["probs"].argmax(1) == 0).all() and (z["probs"][:, 0] >= 0.6).all()


@pytest.mark.slow
def test_every_kept_sample_is_in_the_manifest_marked_synthetic(built):
    run, _ = built
    lines = [json.loads(x) for x in (run.dir / "data" / "manifest.jsonl").read_text().splitlines()]
    synthetic = [x for x in lines if x["synthetic"]]
    assert len(synthetic) == run.result("generate")["kept"]
    assert len(lines) - len(synthetic) == 240 + 9  # the pool and the examples, each once
    for x in synthetic:
        assert x["label"] == "circle" and x["split"] == "train" and x["source"] == "synthetic:test-shapes"
        assert x["generation"]["kind"] in ("circle", "square") and (run.dir / x["uid"]).is_file()


@pytest.mark.slow
def test_with_and_without_are_measured_and_reported(built):
    run, metrics = built
    train = run.result("train")["synthetic"]
    assert train["samples"] == run.result("generate")["kept"]
    assert train["shipped"] == ("with synthetic" if train["val_accuracy_with"] > train["val_accuracy_without"]
                                else "without synthetic")
    assert (run.dir / "synthetic" / "student_with.pt").is_file() and (run.dir / "synthetic" / "student_without.pt").is_file()
    card = metrics["synthetic"]
    ablation = card["ablation"]
    assert ablation["evaluated_on"].startswith("test:") and set(ablation["recall_with"]) == {"circle"}
    # the shipped arm is the student the build exported: the same weights, and (unless the PTQ gate
    # fine-tuned it with QAT before export) the same accuracy through torch and through ONNX
    shipped = "with" if train["shipped"] == "with synthetic" else "without"
    arm, exported = (torch.load(run.dir / path, weights_only=False)["state_dict"]
                     for path in (f"synthetic/student_{shipped}.pt", "student.pt"))
    assert all(torch.equal(arm[k], exported[k]) for k in exported)
    if run.result("quantize")["student"]["ptq_gate"]["decision"] != "qat":
        assert ablation[f"fp32_accuracy_{shipped}"] == pytest.approx(metrics["student_fp32_test_accuracy"], abs=0.01)
    assert card["rejection_rate"] == run.result("generate")["rejection_rate"]
    assert list(metrics["timings_s"])[:5] == ["data", "teacher", "label", "generate", "train"]
    report = (run.dir / "report.html").read_text()
    assert "Synthetic data (data card)" in report and "gate rejection rate" in report
    assert "near-duplicate of the pool" in report and "Shipped:" in report


@pytest.mark.slow
def test_a_generator_that_cannot_run_is_recorded_and_the_build_goes_on(built, tmp_path):
    """Auto mode, every class short, a diffusers folder that does not exist: one sentence, no synthetic data."""
    from agent.plan import GenerateStep, Plan
    from agent.stage_generate import synthesize
    from agent.stages import StageContext

    run, _ = built
    folder = tmp_path / run.id
    shutil.copytree(run.dir, folder)
    (folder / "stages" / "generate.json").unlink()
    step = GenerateStep(mode="auto", min_per_class=10_000, text_to_image={"model": str(tmp_path / "no-pipeline")})
    plan = Plan(steps=[step if s.kind == "generate" else s for s in run.plan.steps])
    copy = Run(id=run.id, dir=folder, spec=run.spec, plan=plan)
    result = synthesize(StageContext(run=copy, show_bars=False))
    assert result["kept"] == 0 and result["classes"] == ["circle", "square", "triangle"]
    assert result["unavailable"].startswith("The diffusers pipeline folder") and result["unavailable"].endswith(".")
    assert json.loads((folder / "stages" / "generate.json").read_text())["unavailable"] == result["unavailable"]
    # a class no pool image was labeled: only text-to-image could fill it, and it could not, so the build stops
    label = json.loads((folder / "stages" / "label.json").read_text())
    (folder / "stages" / "label.json").write_text(json.dumps({**label, "starved": ["triangle"]}))
    (folder / "stages" / "generate.json").unlink()
    with pytest.raises(NanofactoryError, match=r"No pool image was labeled 'triangle' with confidence and synthesis "
                                               r"could not fill it \(The diffusers pipeline folder .* does not exist"):
        synthesize(StageContext(run=copy, show_bars=False))


def _args(**kw) -> argparse.Namespace:
    base = {"generate": None, "no_generate": False, "generate_model": None, "generate_minutes": None}
    return argparse.Namespace(**(base | kw))


def test_cli_generate_options_become_the_plan_step(tmp_path):
    from agent.cli_build import generate_step
    from agent.parse import spec_from_request
    from agent.spec import DataSpec, PoolSource

    spec = spec_from_request(REQUEST, DataSpec(pool=[PoolSource(kind="fashion-mnist")]))
    assert generate_step(spec, _args()).mode == "auto"
    assert generate_step(spec, _args(no_generate=True)).mode == "off"
    with pytest.raises(NanofactoryError, match="not a diffusers pipeline folder"):  # up front, not at the end
        generate_step(spec, _args(generate="all", generate_model=str(tmp_path)))
    (tmp_path / "model_index.json").write_text("{}")
    step = generate_step(spec, _args(generate="Circles, triangle", generate_minutes=0.5, generate_model=str(tmp_path)))
    assert (step.mode, step.classes, step.ddpm.budget_minutes) == ("on", ["circle", "triangle"], 0.5)
    assert step.text_to_image.model == str(tmp_path.resolve())
    assert generate_step(spec, _args(generate="all")).classes == []
    with pytest.raises(NanofactoryError, match="'hexagon', which is not a class; use 'all' or some of: circle"):
        generate_step(spec, _args(generate="hexagon"))
    with pytest.raises(NanofactoryError, match="not both"):
        generate_step(spec, _args(generate="all", no_generate=True))
    with pytest.raises(NanofactoryError, match="budget_minutes"):
        generate_step(spec, _args(generate_minutes=0))


def test_plans_without_a_generate_step_still_load():
    """design.json files written before the generate step replay unchanged: no step, no generation."""
    from agent.plan import Plan

    plan = Plan.model_validate({"steps": [{"kind": "label"}]})
    assert all(s.kind != "generate" for s in plan.steps)


def test_ddpm_path_generates_for_the_short_classes(tmp_path):
    """image_generator trains a DDPM once (reused after) and synthesize_images gates what it draws."""
    from generators.ddpm import META, DDPMConfig
    from generators.gate import GateConfig
    from generators.synthesize import (
        ClassNeed,
        ImageViews,
        image_generator,
        synthesize_images,
    )

    rng = np.random.default_rng(0)
    x = rng.integers(0, 255, (12, 16, 16, 1)).astype(np.uint8)
    y = np.arange(12) % 2
    config = DDPMConfig(max_steps=2, batch_size=4, channels=[8, 16], sample_steps=2)
    generator, info = image_generator(None, config, x, y, ["a", "b"], tmp_path)
    assert info["generator"] == "ddpm" and info["trained_steps"] == 2
    stamp = (tmp_path / "ddpm" / META).stat().st_mtime_ns
    image_generator(None, config, x, y, ["a", "b"], tmp_path)
    assert (tmp_path / "ddpm" / META).stat().st_mtime_ns == stamp  # reused, not retrained

    class Judge:  # agrees with every other candidate
        pool_index = None

        def __call__(self, images, target):
            probs = np.zeros((len(images), 2), np.float32)
            probs[:, target] = np.where(np.arange(len(images)) % 2 == 0, 0.9, 0.1)
            probs[:, 1 - target] = 1 - probs[:, target]
            return images.reshape(len(images), -1).astype(np.float32), probs

    needs = [ClassNeed(1, "b", "b", [], real=6), ClassNeed(0, "c", "c", [], real=0)]
    made = synthesize_images(generator, needs, Judge(), GateConfig(duplicate_similarity=1.0), 6, tmp_path,
                             ImageViews(16, 1, 8, 1), num_labels=2)
    assert made.per_class["b"]["generated"] == 6 and made.per_class["b"]["kept"] == 3
    assert made.per_class["b"]["rejected"] == {"teacher disagrees": 3}
    assert "cannot draw" in made.per_class["c"]["unavailable"]  # the DDPM never saw 'c'; the rest went on
    assert made.images.shape == (3, 8, 8, 1) and (made.labels == 1).all() and made.summary()["rejection_rate"] == 0.5


# ---- the agent tool --------------------------------------------------------------------------------


@pytest.mark.skipif(not shutil.which("espeak-ng"), reason="needs espeak-ng (make installs it as root)")
def test_agent_tool_synthesizes_keyword_clips(tmp_path):
    from agent.context import Context
    from agent.tools import call_tool

    ctx = Context(workspace=tmp_path, runs_dir=tmp_path / "runs")
    out = call_tool("generate_samples", {"generator": "speech", "class_name": "hey nano", "count": 3,
                                         "folder": "clips/hey"}, {}, ctx)
    assert out.result["status"] == "ok" and out.result["files"] == 3
    assert sorted(p.name for p in (tmp_path / "clips" / "hey").iterdir()) == [f"hey-nano-0-{i:05d}.wav" for i in range(3)]


def test_agent_tool_refuses_outside_paths_and_reports_missing_models(tmp_path, monkeypatch):
    from agent.context import Context
    from agent.tools import call_tool

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    ctx = Context(workspace=tmp_path / "ws", runs_dir=tmp_path / "runs")
    (tmp_path / "ws").mkdir()
    outside = call_tool("generate_samples", {"generator": "speech", "class_name": "yes", "count": 1,
                                             "folder": str(tmp_path / "elsewhere")}, {}, ctx).result
    assert "outside the workspace" in outside["error"] and not (tmp_path / "elsewhere").exists()
    missing = call_tool("generate_samples", {"generator": "diffusers", "class_name": "raccoon", "count": 1,
                                             "folder": "img", "model": "someone/not-cached"}, {}, ctx).result
    assert "not in the local Hugging Face cache" in missing["error"]
    bad = call_tool("generate_samples", {"generator": "speech", "class_name": "yes", "count": 1, "folder": "a",
                                         "model": "x"}, {}, ctx).result
    assert bad["error"].startswith("Generator 'speech': field `model`")
