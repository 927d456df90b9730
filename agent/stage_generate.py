"""The plan's generate step, run at the start of the train stage: synthetic images for the classes
that are short, kept only where the teacher agrees (generators/), then the student trained with
and without them, and the one that does better on real validation images shipped.

Generation runs once per run and is recorded in ``stages/generate.json`` (a resumed run reuses it);
``data/synthetic.npz`` holds the kept samples, ``synthetic/`` the candidates, the gate's decision on
each (``gate.jsonl``), the DDPM when one was trained, and the two students. A generator that cannot
run is recorded in one sentence and the build goes on without synthetic data.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import numpy as np

from knowledge.errors import NanofactoryError
from knowledge.io import write_json_atomic, write_text_atomic

log = logging.getLogger(__name__)


def _generate_step(ctx):
    step = next((s for s in ctx.run.plan.steps if s.kind == "generate"), None)  # plans from before it: none
    return None if step is None or step.mode == "off" else step


def text_to_image_may_fill(ctx) -> bool:
    """A class no pool image was labeled can only come from a text-to-image pipeline (a DDPM needs images)."""
    step = _generate_step(ctx)
    return step is not None and step.text_to_image is not None


def pool_vectors(run_dir: Path) -> np.ndarray:
    """The pool projected into the labeling space, as the label stage saved it."""
    return np.load(Path(run_dir) / "index" / "pool_vectors.npy").astype(np.float32)


def synthesize(ctx) -> dict:
    """Synthetic images for the short classes, kept where the teacher agrees; done once per run
    (``stages/generate.json``). A generator that cannot run is recorded and the build goes on without."""
    step = _generate_step(ctx)
    if step is None:
        return {}
    if ctx.run.is_done("generate"):  # a resumed run: generated before the interruption
        result = ctx.run.result("generate")
    else:
        started = time.perf_counter()
        result = {"mode": step.mode, **_generate(ctx, step)}
        result["seconds"] = round(time.perf_counter() - started, 2)
        write_json_atomic(ctx.run.stage_file("generate"), result)
        result["fresh"] = True
    empty = [n for n in ctx.run.result("label").get("starved", [])
             if not result.get("per_class", {}).get(n, {}).get("kept")]
    if empty:
        why = (result.get("unavailable") or "no generated image of it passed the quality gate").rstrip(".")
        raise NanofactoryError(
            f"No pool image was labeled {', '.join(repr(s) for s in empty)} with confidence and synthesis could not "
            f"fill it ({why}); add example images of that class (--examples) or describe it differently.")
    return result


def _generate(ctx, step) -> dict:
    from agent.data import native_shape
    from knowledge.io import write_npz_atomic
    from generators import GeneratorUnavailable
    from generators.gate import TeacherJudge
    from generators.synthesize import (
        ClassNeed,
        ImageViews,
        image_generator,
        synthesize_images,
    )
    from knowledge.index import VectorIndex
    from knowledge.labeling import Projection

    spec, names, inp = ctx.run.spec, ctx.run.spec.label_names, ctx.input
    unknown = [c for c in step.classes if c not in names[: len(spec.classes)]]
    if unknown:
        raise NanofactoryError(f"The generate step names {', '.join(map(repr, unknown))}, which is not a class; "
                               f"use some of: {', '.join(c.name for c in spec.classes)}.")
    with np.load(ctx.dir / "data" / "labels.npz") as z:
        probs, split = z["probs"], z["split"]
    train = np.where(split == "train")[0]
    ex = ctx.examples
    y = np.concatenate([probs[train].argmax(1), ex.labels]).astype(np.int64)
    counts = np.bincount(y, minlength=len(names))
    wanted = (step.classes or [c.name for c in spec.classes]) if step.mode == "on" else \
        [c.name for i, c in enumerate(spec.classes) if counts[i] < step.min_per_class]
    needs = [ClassNeed(i, c.name, c.prompt, c.negatives, int(counts[i])) for i, c in enumerate(spec.classes)
             if c.name in wanted]
    if not needs:
        return {"classes": [], "generated": 0, "kept": 0,
                "note": f"no class has fewer than {step.min_per_class} confidently labeled images"}
    x = np.load(ctx.dir / "data" / "pool_inputs.npy")[train]
    if ex.pool is not None:
        x = np.concatenate([x, ex.pool.load(range(len(ex.pool)), inp.size, inp.channels)])
    base = {"classes": [n.name for n in needs], "generated": 0, "kept": 0}
    try:
        generator, info = image_generator(step.text_to_image, step.ddpm, x, y, names, ctx.dir / "synthetic",
                                          seed=spec.seed, progress=ctx.show_bars)
    except GeneratorUnavailable as e:
        log.warning("building without synthetic data: %s", e)
        return {**base, "unavailable": str(e)}
    projection = Projection.load(ctx.dir / "index" / "projection.npz")
    judge = TeacherJudge(teacher=ctx.teacher, pool_embeddings=pool_vectors(ctx.dir),
                         pool_labels=np.where(np.isin(split, ("train", "val")), probs.argmax(1), -1), num_labels=len(names),
                         prompts=[c.prompt for c in spec.classes], other=spec.other, projection=projection,
                         pool_index=VectorIndex.load(ctx.dir / "index" / "pool.faiss"), seed=spec.seed)
    side, channels = native_shape(ctx.pool)  # the teacher sees candidates the way it saw the pool
    views = ImageViews(side or ctx.teacher.image_size, channels or 3, inp.size, inp.channels)
    made = synthesize_images(generator, needs, judge, step.gate, step.candidates_per_class, ctx.dir / "synthetic",
                             views, len(names), seed=spec.seed, progress=ctx.show_bars)
    write_npz_atomic(ctx.dir / "data" / "synthetic.npz", images=made.images, labels=made.labels, probs=made.probs)
    write_text_atomic(ctx.dir / "synthetic" / "gate.jsonl", "".join(json.dumps(c) + "\n" for c in made.candidates))
    manifest = ctx.dir / "data" / "manifest.jsonl"
    real = [line for line in manifest.read_text().splitlines() if not json.loads(line).get("synthetic")]
    kept = [json.dumps({"uid": str(Path(c["file"]).relative_to(ctx.dir)), "source": f"synthetic:{info['generator']}",
                        "label": c["label"], "confidence": c["confidence"], "split": "train", "synthetic": True,
                        "provenance": f"generated by {info['generator']}, kept by the quality gate",
                        "generation": c["provenance"]}) for c in made.candidates if c["kept"]]
    write_text_atomic(manifest, "\n".join(real + kept) + "\n")
    return {**base, **info, **made.summary()}


def train_with_synthetic(ctx, without, x, y, soft, val_x, val_y):
    """Train again with the kept synthetic samples; ship that student only if it beats the one without
    on the real validation images."""
    from agent.stages import _save_student
    from tools.train import train_student

    step, spec = ctx.run.plan.step("train"), ctx.run.spec
    with np.load(ctx.dir / "data" / "synthetic.npz") as z:
        sx, sy, sp = z["images"], z["labels"], z["probs"]
    with_ = train_student(ctx.student, np.concatenate([x, sx]), np.concatenate([y, sy]), np.concatenate([soft, sp]),
                          val_x, val_y, step.train, seed=spec.seed, desc="student (KD + synthetic)",
                          progress=ctx.show_bars)
    _save_student(ctx.dir / "synthetic" / "student_with.pt", with_.model, ctx.student)
    _save_student(ctx.dir / "synthetic" / "student_without.pt", without.model, ctx.student)
    acc_with, acc_without = with_.history[-1]["val_accuracy"], without.history[-1]["val_accuracy"]
    helped = acc_with > acc_without
    log.info("synthetic data %s: validation accuracy %.4f with, %.4f without", "helped" if helped else "did not help",
             acc_with, acc_without)
    return (with_ if helped else without), {
        "samples": len(sy), "val_accuracy_with": acc_with, "val_accuracy_without": acc_without,
        "shipped": "with synthetic" if helped else "without synthetic", "history_without": without.history}


def synthetic_ablation(ctx, x: np.ndarray, truth: np.ndarray, evaluated_on: str) -> dict | None:
    """Did the synthetic samples help? The students trained with and without them, on the same real images."""
    import torch

    from agent.stages import load_student
    from tools.train import predict

    folder = ctx.dir / "synthetic"
    if not (folder / "student_with.pt").is_file():
        return None
    names = ctx.run.spec.label_names
    generated = [names.index(n) for n in ctx.run.result("generate").get("classes", [])]
    out = {"evaluated_on": evaluated_on}
    for arm in ("with", "without"):
        model, _ = load_student(folder / f"student_{arm}.pt")
        pred = predict(model, torch.from_numpy(x))
        out[f"fp32_accuracy_{arm}"] = float((pred == truth).mean())
        out[f"recall_{arm}"] = {names[c]: float((pred[truth == c] == c).mean()) if (truth == c).any() else None
                                for c in generated}
    return out


def add_synthetic_metrics(ctx, metrics: dict) -> None:
    """The data card's synthetic lines (``metrics["synthetic"]``), and generation's time split out of train's."""
    if not ctx.run.is_done("generate"):
        metrics["synthetic"] = None
        return
    train = ctx.run.result("train")
    training = {k: v for k, v in (train.get("synthetic") or {}).items() if k != "history_without"}
    metrics["synthetic"] = {**ctx.run.result("generate"), "training": training or None,
                            "ablation": ctx.run.result("evaluate").get("synthetic")}
    seconds = train.get("generate_seconds") or 0.0
    if seconds and "train" in metrics["timings_s"]:
        timings = {}
        for k, v in metrics["timings_s"].items():
            if k == "train":
                timings["generate"] = seconds
                v = round(v - seconds, 2)
            timings[k] = v
        metrics["timings_s"] = timings


def synthetic_samples(ctx, per_class: int) -> dict:
    path = ctx.dir / "data" / "synthetic.npz"
    if not path.is_file():
        return {}
    with np.load(path) as z:
        images, labels, probs = z["images"], z["labels"], z["probs"]
    names = ctx.run.spec.label_names
    return {names[c]: [(images[i], float(probs[i, c])) for i in np.where(labels == c)[0][:per_class]]
            for c in np.unique(labels)}
