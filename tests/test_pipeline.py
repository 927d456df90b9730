"""End to end on a small synthetic image folder: artifacts, metrics, resume, replay."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from agent.cli import main
from agent.pipeline import open_run
from agent.runs import RunStore

pytestmark = pytest.mark.slow

REQUEST = "tells apart circles, squares, triangles and everything else on an nRF52840 with 64 KB RAM"
REQUIRED = ("teacher_label_accuracy", "student_fp32_test_accuracy", "student_int8_test_accuracy",
            "oracle_int8_test_accuracy", "int8_fp32_top1_agreement", "weight_bytes", "sram_estimate_bytes", "macs",
            "latency_estimate_ms", "device", "timings_s")


@pytest.fixture(scope="module")
def built(shapes_data, tmp_path_factory):
    runs = tmp_path_factory.mktemp("runs")
    with pytest.MonkeyPatch.context() as patch:  # a cold embedding cache for this module's builds
        patch.setenv("NANOFACTORY_CACHE", str(tmp_path_factory.mktemp("cold-cache")))
        code = main(["build", REQUEST, "--images", str(shapes_data["pool"]), "--examples", str(shapes_data["examples"]),
                     "--test", str(shapes_data["test"]), "--runs-dir", str(runs), "--epochs", "30", "--quiet",
                     "--search", "--search-candidates", "24"])
        assert code == 0
        store = RunStore(runs)
        (record,) = store.list()
        yield store, record.id


def test_artifacts_and_metrics(built):
    store, run_id = built
    run_dir = store.path(run_id)
    for name in ("design.json", "data/manifest.jsonl", "index/pool.faiss", "student.pt", "model.onnx",
                 "model_int8.onnx", "metrics.json", "report.html"):
        assert (run_dir / name).is_file(), name
    metrics = json.loads((run_dir / "metrics.json").read_text())
    for key in REQUIRED:
        assert key in metrics, key
    assert metrics["device"] == "nRF52840"
    assert metrics["oracle_int8_test_accuracy"] is None  # a folder pool has no hidden labels
    assert metrics["int8_fp32_top1_agreement"] >= 0.9
    assert metrics["onnx_max_abs_diff"] < 1e-3
    assert metrics["sram_estimate_bytes"] <= 64 * 1024 and metrics["fits_sram"]
    # shapes are easy once labeled: far above the 25 % of guessing among 4 labels
    assert metrics["student_int8_test_accuracy"] >= 0.8
    assert set(metrics["timings_s"]) >= {"data", "teacher", "label", "train", "quantize", "evaluate", "total"}
    assert not list(run_dir.rglob("*.tmp")), "no half-written files"
    assert not (run_dir / ".building").exists()  # only while a process builds it (`runs remove` checks)
    assert metrics["teacher_images_per_second"] > 0  # the cache was empty, so the teacher really ran
    zero_shot = metrics["labeling"]["zero_shot_on_examples"]  # how the descriptions score the example images
    given = metrics["labeling"]["examples_per_class"]
    assert zero_shot["of"] == sum(n for name, n in given.items() if name != "other") > 0
    assert 0 <= zero_shot["right"] <= zero_shot["of"] and zero_shot["median_score"] >= 0


def test_ptq_gate_is_logged(built):
    """The quantize stage compares int8 (the compiler's build) with fp32 on validation and logs the decision."""
    store, run_id = built
    gate = json.loads((store.path(run_id) / "stages" / "quantize.json").read_text())["student"]["ptq_gate"]
    assert gate["decision"] in ("ptq", "qat", "ptq (QAT did not help)")
    assert 0 <= gate["ptq_int8_val_accuracy"] <= 1 and 0 <= gate["fp32_val_accuracy"] <= 1
    if gate["fp32_val_accuracy"] - gate["ptq_int8_val_accuracy"] > gate["max_drop"]:
        assert "qat_int8_val_accuracy" in gate  # QAT ran, and both accuracies are in the run


def test_search_stage_chose_within_budget(built):
    """The search scored candidates under the budget and trained the top ones beside the fixed student;
    the trained student is the chosen one, and the SRAM it reports is the compiled arena."""
    store, run_id = built
    run_dir = store.path(run_id)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    s = metrics["search"]
    assert s["scored"] == 24 and s["chosen"] in ("searched", "fixed")
    assert all(t["sram_bytes"] <= 64 * 1024 for t in s["trained"])
    assert s["fixed"]["val_accuracy"] is not None and s["best_val_accuracy"] >= s["fixed"]["val_accuracy"]
    assert metrics["student"]["arch"] == s["best"]
    assert (run_dir / "search" / "candidates.csv").read_text().count("\n") == 25  # header + 24
    assert "Architecture search" in (run_dir / "report.html").read_text()


def test_compile_stage_is_exact_and_verified(built):
    """The build's compile stage: the SRAM estimate made before training is the C library's arena,
    and the C library and TFLite Micro agree bit for bit on the test images."""
    store, run_id = built
    run_dir = store.path(run_id)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    c = metrics["compiled"]
    assert c["arena_bytes"] == metrics["sram_estimate_bytes"] and c["sram_estimate_matches_arena"]
    assert c["c_vs_reference_bitexact"] == 1.0
    assert c["tflm_vs_c_bitexact"] == 1.0
    # LiteRT's reference fully connected kernel rounds its requantization once where TFLM rounds
    # twice: the two runtimes differ by one step on a few inputs, and we follow TFLM
    assert c["litert_vs_c_bitexact"] >= 0.9
    # LiteRT's default kernels (XNNPACK) round differently again: a step or so apart, the same class
    assert c["litert_optimized_vs_c_top1_agreement"] >= 0.9 and 0 <= c["litert_optimized_vs_c_max_steps"] <= 8
    assert c["arena_bytes"] <= c["tflm_arena_head_bytes"]
    assert abs(c["c_int8_accuracy"] - metrics["student_int8_test_accuracy"]) <= 0.05
    assert c["onnxruntime_fused_vs_qdq_top1_agreement"] >= 0.98  # model_int8.onnx as a user's onnxruntime runs it
    for name in ("model.tflite", "compile.json", "verify.json", "c/model.c", "c/model.h", "c/nf_kernels.c", "c/Makefile"):
        assert (run_dir / "compiled" / name).is_file(), name
    header = (run_dir / "compiled" / "c" / "model.h").read_text()
    assert f"#define NF_ARENA_SIZE {c['arena_bytes']}\n" in header
    if shutil.which("qemu-system-arm") and shutil.which("arm-none-eabi-gcc"):  # the library on emulated chips
        assert {core: v["bitexact"] for core, v in c["cortex_m"].items()} == {"cortex-m4": 1.0, "cortex-m7": 1.0,
                                                                               "cortex-m0plus": 1.0}
        # ARMv6-M code has no DSP loops: more instructions for the same outputs
        assert c["cortex_m"]["cortex-m0plus"]["instructions"] > c["cortex_m"]["cortex-m4"]["instructions"]
        # the build's device is an M4: its latency floor is the instructions one inference takes there
        instructions = c["cortex_m"]["cortex-m4"]["instructions"]
        assert metrics["instructions_per_inference"] == instructions >= metrics["macs"] / 2
        assert metrics["latency_floor_ms"] == pytest.approx(instructions / 64e6 * 1e3)  # nRF52840: 64 MHz
        assert "latency, this C library (at least:" in (run_dir / "report.html").read_text()
        # each layer timed through model.c's hooks: the layers add up to the whole inference
        layers = c["cortex_m"]["cortex-m4"]["layer_instructions"]
        assert len(layers) == len(json.loads((run_dir / "compiled" / "compile.json").read_text())["layers"])
        assert sum(layers) == pytest.approx(instructions, rel=0.02) and min(layers[:-1]) >= 0
        assert c["cortex_m"]["cortex-m4"]["frame_instructions"]["320x240x3"] > 320 * 240  # a camera frame's cost
        # what the library takes on the M4: its code and weights, its arena and the stack an inference used
        m4, stack = c["arm"]["cortex-m4"], c["cortex_m"]["cortex-m4"]["stack_bytes"]
        assert 64 < stack < 4096 and metrics["stack_bytes"] == stack
        assert metrics["library_ram_bytes"] == c["arena_bytes"] + stack and metrics["fits_sram"]
        assert metrics["library_flash_bytes"] == m4["text"] + m4["data"] > metrics["weight_bytes"]
        # the frame's conversion holds a frame row and the resized rows an output row spans
        assert c["cortex_m"]["cortex-m4"]["frame_stack_bytes"] > 480
        assert "RAM, this C library (arena +" in (run_dir / "report.html").read_text()
    # camera frames to inputs: the C library prepares frames as training prepared the images
    assert c["frames"]["frames_bitexact"] == 1.0 and c["frames"]["frames_checked"] >= 30
    source = (run_dir / "compiled" / "c" / "nf_io.c").read_text()
    assert 'nf_labels[NF_OUTPUT_SIZE] = {"circle", "square", "triangle", "other"}' in source
    library = run_dir / "compiled" / "arduino" / f"Nanofactory_{run_id}"
    assert (library / "examples" / "Selftest" / "Selftest.ino").is_file() and (library / "src" / "nf_io.c").is_file()
    assert (run_dir / "compiled" / "labels.txt").read_text() == "circle\nsquare\ntriangle\nother\n"
    report = (run_dir / "report.html").read_text()
    assert "Deployment: C library and .tflite" in report and "per-layer profile" in report
    assert "nf_labels[nf_argmax(output)];  /* circle, square, triangle, other */" in report  # this model, in a firmware


def test_verify_prints_every_check_and_the_floor_per_layer(built, capsys):
    """`nanofactory verify RUN` checks the compiled run again and says what each layer costs on the
    device's core; it exits 0 only when everything it compared is bit-exact."""
    store, run_id = built
    run_dir = store.path(run_id)
    assert main(["verify", run_id, "--runs-dir", str(run_dir.parent), "--samples", "50"]) == 0
    out = capsys.readouterr().out
    figures = dict(line.split(None, 1) for line in out.splitlines() if line[:1].isalpha() and " " in line)
    assert figures["c_vs_reference_bitexact"].strip() == "1.0" and figures["tflm_vs_c_bitexact"].strip() == "1.0"
    if shutil.which("qemu-system-arm") and shutil.which("arm-none-eabi-gcc"):
        layers = json.loads((run_dir / "compiled" / "compile.json").read_text())["layers"]
        assert "latency floor, nRF52840" in out and "per layer on the emulated Cortex-M4 (floor: at 64 MHz" in out
        assert "B of stack per inference on the emulated Cortex-M4" in figures["RAM,"]
        table = out.split("per layer on the emulated Cortex-M4")[1].splitlines()[2:]
        assert [line.split()[1] for line in table if line.strip()] == [row["name"] for row in layers]


def test_predict_answers_as_the_board_does_and_scores_class_folders(built, shapes_data, tmp_path, capsys):
    """`nanofactory predict RUN FOLDER`: the C library's answers on a person's images, prepared as training
    prepared its images; on the test folder (a subfolder per class) exactly the build's C accuracy."""
    from agent.predict import C_LIBRARY, ONNX, predict

    store, run_id = built
    run_dir = store.path(run_id)
    verify = json.loads((run_dir / "compiled" / "verify.json").read_text())
    p = predict(run_dir, [shapes_data["test"]])
    assert p.engine == C_LIBRARY and len(p.images) == 60 and p.probs.shape == (60, 4)
    assert np.allclose(p.probs.sum(1), 1) and p.accuracy() == pytest.approx(verify["c_int8_accuracy"])

    corrupt = tmp_path / "shots" / "broken.png"  # a folder without class subfolders: answers, no score
    corrupt.parent.mkdir()
    corrupt.write_bytes(b"not a png")
    shutil.copy(next(shapes_data["test"].glob("circle/*.png")), corrupt.parent / "a.png")
    loose = predict(run_dir, [corrupt.parent])
    assert loose.images == [str(corrupt.parent / "a.png")] and loose.truth is None and loose.accuracy() is None
    assert loose.skipped == [(str(corrupt), "UnidentifiedImageError")]

    copy = tmp_path / "runs" / run_id  # no compiled library of this compiler: the int8 ONNX answers, and says so
    shutil.copytree(run_dir, copy)
    (copy / "compiled" / "graph.pkl").unlink()
    fallback = predict(copy, [shapes_data["test"]])
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert fallback.engine.startswith(ONNX) and "holds no compiled model" in fallback.engine
    assert fallback.accuracy() == pytest.approx(metrics["student_int8_test_accuracy"])

    out_csv = tmp_path / "answers.csv"
    assert main(["predict", run_id, str(shapes_data["test"]), "--runs-dir", str(run_dir.parent), "--show", "3",
                 "--csv", str(out_csv)]) == 0
    out = capsys.readouterr().out
    right = round(verify["c_int8_accuracy"] * 60)
    assert f"60 images through {C_LIBRARY}" in out and f"against the class folders: {right} of 60 right" in out
    assert "... 57 more" in out and "confusion (rows: the folder's class" in out
    rows = out_csv.read_text().splitlines()
    assert len(rows) == 61 and rows[0].startswith("image,class,score,score_circle")
    for bad, says in ((tmp_path / "nope", "does not exist; pass image files or folders"),
                      (out_csv, "is not an image (")):
        assert main(["predict", run_id, str(bad), "--runs-dir", str(run_dir.parent)]) == 1
        assert says in capsys.readouterr().err


def test_manifest_covers_every_sample(built, shapes_data):
    store, run_id = built
    lines = [json.loads(x) for x in (store.path(run_id) / "data" / "manifest.jsonl").read_text().splitlines()]
    pool = [x for x in lines if x["source"] != "examples"]
    examples = [x for x in lines if x["source"] == "examples"]
    assert len(pool) == 240 and len(examples) == 9
    splits = {"train", "val", "low-confidence", "duplicate", "capped", "rejected"}
    assert {x["split"] for x in pool} <= splits
    with np.load(store.path(run_id) / "data" / "labels.npz") as z:
        assert set(z["split"].tolist()) <= splits  # stored whole, not cut to a fixed width
    assert {x["label"] for x in pool} <= {"circle", "square", "triangle", "other"}
    assert all(0 <= x["confidence"] <= 1 and len(x["sha1"]) == 40 for x in pool)
    # the file names hold the truth the pipeline never saw ("circle-1-7.png"): the teacher's labels match it
    truth = [x["uid"].rsplit("/", 1)[-1].split("-")[0] for x in pool]
    accuracy = np.mean([x["label"] == t for x, t in zip(pool, truth)])
    assert accuracy >= 0.85


def test_index_reloads_and_finds_neighbours(built):
    from knowledge.index import VectorIndex
    from knowledge.labeling import Projection

    store, run_id = built
    run_dir = store.path(run_id)
    index = VectorIndex.load(run_dir / "index" / "pool.faiss")
    projection = Projection.load(run_dir / "index" / "projection.npz")
    assert len(index) == 240 and index.dim == projection.basis.shape[1]
    sims, ids = index.search(np.asarray([index._index.reconstruct(7)]), 3)
    assert ids[0, 0] == 7 and sims[0, 0] == pytest.approx(1.0, abs=1e-4)


def test_design_replays(built):
    """design.json alone rebuilds the spec and the plan (artifacts carry their configs)."""
    from agent.plan import Plan
    from agent.spec import DesignSpec

    store, run_id = built
    design = json.loads((store.path(run_id) / "design.json").read_text())
    spec = DesignSpec.from_dict(design["spec"])
    plan = Plan.model_validate(design["plan"])
    assert spec.request == REQUEST and plan.step("train").train.epochs == 30
    assert design["versions"]["torch"].startswith("2.13.0")
    run = open_run(store, run_id)
    assert run.finished_stages() == ["data", "teacher", "label", "search", "train", "quantize", "evaluate", "compile",
                                     "report"]


def test_a_run_saved_before_a_field_existed_reopens_as_it_was_built(built, tmp_path):
    """A field added later (reverse CE, made the default after runs without it existed) keeps the value the run
    had when its design.json lacks it: --resume and --retrain must not retrain an old run with new defaults."""
    from agent.pipeline import saved_plan

    store, run_id = built
    design = json.loads((store.path(run_id) / "design.json").read_text())
    assert open_run(store, run_id).plan.step("train").train.reverse_ce == 3.0  # today's runs record it
    train = next(s for s in design["plan"]["steps"] if s["kind"] == "train")
    del train["train"]["reverse_ce"]
    old = saved_plan(design["plan"])
    assert old.step("train").train.reverse_ce == 0.0 and old.step("train").train.epochs == 30
    (tmp_path / run_id).mkdir()
    (tmp_path / run_id / "design.json").write_text(json.dumps(design))
    assert open_run(RunStore(tmp_path), run_id).plan.step("train").train.reverse_ce == 0.0


def test_runs_lists_and_shows(built, capsys):
    store, run_id = built
    assert main(["runs", "--runs-dir", str(store.root)]) == 0
    out = capsys.readouterr().out
    assert run_id in out and "done" in out
    assert main(["runs", "show", run_id, "--runs-dir", str(store.root)]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["metrics"]["device"] == "nRF52840"


def test_a_run_copied_from_another_machine_is_listed_shown_and_compared(built, capsys, tmp_path):
    """Run folders under a root whose index lacks them (copied in, or index.sqlite deleted) are indexed from
    their own files: `runs` lists them, `runs show` and `runs compare` read them, an unfinished one says so."""
    import shutil

    store, run_id = built
    shutil.copytree(store.path(run_id), tmp_path / run_id)
    half = tmp_path / "20200101-000000-half"
    shutil.copytree(store.path(run_id), half)
    (half / "metrics.json").unlink()
    design = json.loads((half / "design.json").read_text())
    (half / "design.json").write_text(json.dumps({**design, "run_id": half.name, "created": "2020-01-01T00:00:00+0000"}))
    assert main(["runs", "--runs-dir", str(tmp_path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[1].startswith(run_id) and "done" in lines[1] and "nRF52840" in lines[1]  # newest first
    assert lines[2].startswith("20200101-000000-half") and "unfinished" in lines[2]
    assert main(["runs", "show", str(tmp_path / run_id)]) == 0  # a folder: read from there, whatever --runs-dir
    shown = json.loads(capsys.readouterr().out)
    assert shown["run"]["request"] == REQUEST and shown["run"]["student_int8_accuracy"] is not None
    assert main(["runs", "compare", run_id, run_id, "--runs-dir", str(tmp_path)]) == 0
    assert (tmp_path / "index.sqlite").is_file() and len(RunStore(tmp_path).list()) == 2
    fresh = tmp_path / "fresh"  # one run looked up by id (the web page's poll) is indexed without listing all
    shutil.copytree(store.path(run_id), fresh / run_id)
    assert RunStore(fresh).find(run_id).status == "done" and RunStore(fresh).get(run_id).id == run_id
    assert RunStore(fresh).find("nope") is None and RunStore(fresh).find(f"../{run_id}") is None


def test_interrupt_leaves_nothing_half_written_and_resumes(built, monkeypatch, capsys):
    """Ctrl-C while int8 is being written: no partial model, no stage marker; --resume finishes the run."""
    import onnxruntime.quantization as ortq

    store, run_id = built
    run_dir = store.path(run_id)
    for stage in ("quantize", "evaluate", "report"):
        (run_dir / "stages" / f"{stage}.json").unlink()
    (run_dir / "model_int8.onnx").unlink()

    def interrupted(model_input, model_output, *args, **kwargs):
        with open(model_output, "wb") as f:
            f.write(b"half a model")
        raise KeyboardInterrupt

    original = ortq.quantize_static
    monkeypatch.setattr(ortq, "quantize_static", interrupted)
    with pytest.raises(SystemExit) as exit_info:
        main(["build", "--resume", run_id, "--runs-dir", str(store.root), "--quiet"])
    assert exit_info.value.code == 130
    assert "--resume" in capsys.readouterr().err
    assert not (run_dir / "model_int8.onnx").exists()
    assert not (run_dir / "stages" / "quantize.json").exists()
    assert not [p for p in run_dir.rglob("*") if p.name.endswith(".tmp")]
    assert store.get(run_id).status == "interrupted"

    monkeypatch.setattr(ortq, "quantize_static", original)
    assert main(["build", "--resume", run_id, "--runs-dir", str(store.root), "--quiet"]) == 0
    assert (run_dir / "model_int8.onnx").is_file() and (run_dir / "stages" / "report.json").is_file()
    assert store.get(run_id).status == "done"


def test_a_stage_record_cut_short_runs_again_on_resume(built, capsys):
    """A stage record or metrics.json that no longer reads as JSON (a disk filled up, a hand edit) is not a finished
    stage: --resume runs that stage and every one after it again, and `runs show` still answers meanwhile."""
    store, run_id = built
    run_dir = store.path(run_id)
    (run_dir / "stages" / "evaluate.json").write_text('{"student_int8_test_accuracy": 0.')
    (run_dir / "metrics.json").write_text("{")
    compiled_before = (run_dir / "stages" / "compile.json").stat().st_mtime_ns
    assert main(["runs", "show", run_id, "--runs-dir", str(store.root)]) == 0
    capsys.readouterr()
    assert main(["build", "--resume", run_id, "--runs-dir", str(store.root), "--quiet"]) == 0
    assert json.loads((run_dir / "stages" / "evaluate.json").read_text())["seconds"] >= 0
    assert json.loads((run_dir / "metrics.json").read_text())["device"] == "nRF52840"
    assert (run_dir / "stages" / "compile.json").stat().st_mtime_ns != compiled_before  # after evaluate: made again
    assert store.get(run_id).status == "done"


def test_unreadable_answers_are_one_sentence_and_kept(built, capsys):
    store, run_id = built
    answers = store.path(run_id) / "data" / "human_labels.json"
    before = answers.read_text() if answers.is_file() else None
    answers.write_text('{"labels": ')
    try:
        assert main(["review", run_id, "--budget", "0", "--runs-dir", str(store.root)]) == 1
        err = capsys.readouterr().err
        assert "human_labels.json" in err and "move it away" in err and "Traceback" not in err
        assert answers.read_text() == '{"labels": '  # nothing overwritten
    finally:
        answers.write_text(before) if before is not None else answers.unlink()


def test_build_from_saved_spec(shapes_data, tmp_path, capsys):
    """`nanofactory spec --save` then `build --spec FILE --images DIR` runs the saved spec."""
    spec_file = tmp_path / "shapes.yaml"
    assert main(["spec", REQUEST, "--images", str(shapes_data["pool"]), "--examples", str(shapes_data["examples"]),
                 "--save", str(spec_file)]) == 0
    runs = tmp_path / "runs"
    assert main(["build", "--spec", str(spec_file), "--runs-dir", str(runs), "--epochs", "2", "--quiet"]) == 0
    (record,) = RunStore(runs).list()
    design = json.loads((runs / record.id / "design.json").read_text())
    from agent.spec import DesignSpec

    assert DesignSpec.from_dict(design["spec"]) == DesignSpec.load(spec_file)
    assert record.status == "done"


def test_replay_a_design_without_an_llm(built, capsys):
    """`nanofactory run design.json` rebuilds the same spec and plan into a new run."""
    store, run_id = built
    design = store.path(run_id) / "design.json"
    assert main(["run", str(design), "--runs-dir", str(store.root), "--quiet"]) == 0
    assert "report:" in capsys.readouterr().out
    newest = store.list()[0]
    assert newest.id != run_id and newest.status == "done"
    replayed = json.loads((store.path(newest.id) / "design.json").read_text())
    original = json.loads(design.read_text())
    assert replayed["spec"] == original["spec"] and replayed["plan"] == original["plan"]
    assert replayed["decisions"]["planner"].startswith("replay of")
    teacher = json.loads((store.path(newest.id) / "stages" / "teacher.json").read_text())
    assert teacher["embeddings_from_cache"] and teacher["images_per_second"] is None  # same pool: no re-embedding


def test_replay_refuses_a_malformed_plan(tmp_path, capsys):
    bad = tmp_path / "plan.yaml"
    bad.write_text("spec: {classes: [{name: a}], device: RP2040, data: {pool: [{kind: fashion-mnist}]}}\nplan: {steps: [{kind: nope}]}\n")
    assert main(["run", str(bad), "--runs-dir", str(tmp_path)]) == 1
    assert "plan" in capsys.readouterr().err


def test_review_in_the_terminal_then_retrain(built, monkeypatch, capsys):
    """Answers are saved one by one; --retrain builds a new run whose labels use them."""
    import agent.cli_data

    store, run_id = built
    run_dir = store.path(run_id)
    answers = iter(["1", "zebra", "n", "s", "q"])  # top guess; not understood then none-of-these; skip; quit
    monkeypatch.setattr("builtins.input", lambda prompt="": next(answers))
    monkeypatch.setattr(agent.cli_data.sys.stdin, "isatty", lambda: True)
    assert main(["review", run_id, "--runs-dir", str(store.root), "--budget", "6"]) == 0
    out = capsys.readouterr()
    assert "'zebra' is not one of" in out.out and "--retrain" in out.err
    assert "(spot check" in out.out and "right on 0 of 1 spot checks" in out.err  # the 2nd asked was drawn at random
    given = json.loads((run_dir / "data" / "human_labels.json").read_text())["labels"]
    assert len(given) == 2 and sorted(v["label"] == "none of these" for v in given.values()) == [False, True]
    (labeled_uid,) = [u for u, v in given.items() if v["label"] != "none of these"]
    (rejected_uid,) = [u for u, v in given.items() if v["label"] == "none of these"]

    before = {r.id for r in store.list()}
    assert main(["review", run_id, "--runs-dir", str(store.root), "--budget", "0", "--retrain", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "(the weakest class of " in out and ") int8 recall: " in out  # before -> after, where it was weak
    (new_id,) = {r.id for r in store.list()} - before
    assert f"nanofactory runs compare {run_id} {new_id}" in out
    new_dir = store.path(new_id)
    assert json.loads((new_dir / "design.json").read_text())["decisions"]["parent"] == run_id
    label = json.loads((new_dir / "stages" / "label.json").read_text())
    assert label["human_labels"] == 1 and label["human_rejected"] == 1
    assert (label["spot_checks"]["agreed"], label["spot_checks"]["of"]) == (0, 1)
    manifest = {x["uid"]: x for x in map(json.loads, (new_dir / "data" / "manifest.jsonl").read_text().splitlines())}
    assert manifest[labeled_uid]["label"] == given[labeled_uid]["label"]
    assert manifest[labeled_uid]["provenance"].startswith("human") and manifest[labeled_uid]["split"] == "train"
    assert manifest[rejected_uid]["split"] == "rejected"
    report = (new_dir / "report.html").read_text()
    assert "Data card" in report
    per_class = json.loads((new_dir / "metrics.json").read_text())["labeling"]["spot_check_classes"]
    assert per_class == label["spot_check_classes"] and sum(r["labeled"] for r in per_class.values()) == 1
    assert "spot checks by class" in report  # the data card counts the spot checks per class


def test_a_review_session_re_ranks_the_queue_with_the_answers(built, tmp_path, monkeypatch):
    """Every ``refresh`` questions the pool is labeled again with the answers (as a retrained run's label
    stage would) and the next round is ranked by that; skipped images are not asked again."""
    import shutil

    from agent import review

    store, run_id = built
    run_dir = shutil.copytree(store.path(run_id), tmp_path / run_id)  # answers here do not reach the other tests
    (run_dir / review.HUMAN_LABELS).unlink(missing_ok=True)  # another test's answers
    with np.load(run_dir / "data" / "labels.npz") as z:
        probs = z["probs"]
    again = review.relabel(run_dir)  # no answers yet: the label stage's labels, from the cached vectors
    assert again.shape == probs.shape and (again.argmax(1) == probs.argmax(1)).mean() > 0.95

    names = review.label_names(run_dir)
    refreshed, ranked, asked, torn = [], [], [], []

    def relabel(folder):  # the next round's ranking: one image not asked yet that the labeler is now torn on
        sure = np.zeros_like(probs)
        sure[:, 0] = 1.0
        torn.append(min(set(range(len(probs))) - set(asked)))
        sure[torn[0]] = [0.5, 0.5, *[0.0] * (probs.shape[1] - 2)]
        ranked.append(len(review.load_human_labels(folder)))
        return sure

    monkeypatch.setattr(review, "relabel", relabel)
    for k, item in enumerate(review.review_session(run_dir, 6, refresh=3, on_refresh=refreshed.append)):
        asked.append(item.index)
        if k != 1:  # the second is skipped
            review.save_human_label(run_dir, item, names[-1])
    assert len(asked) == 6 and len(set(asked)) == 6
    assert refreshed == [2] and ranked == [2]  # one re-labeling, after the first round's two answers
    assert asked[3] == torn[0]  # the second round opens with the image the new labels are torn on
    assert len(review.load_human_labels(run_dir)) == 5
    next(review.review_session(run_dir, 1))  # a later session starts from the answers the run's labels lack
    assert ranked == [2, 5]
    assert len(list(review.review_session(run_dir, 4, refresh=0))) == 4 and ranked == [2, 5]  # 0: the run's labels


def test_review_needs_a_terminal_or_hidden_labels(built, capsys):
    store, run_id = built
    assert main(["review", run_id, "--runs-dir", str(store.root), "--oracle", "--budget", "3"]) == 1
    assert "hidden labels" in capsys.readouterr().err
    assert main(["review", run_id, "--runs-dir", str(store.root), "--budget", "3"]) == 1  # pytest's stdin: no tty
    assert "not one" in capsys.readouterr().err


def test_find_by_text_and_by_image(built, shapes_data, tmp_path, capsys):
    store, run_id = built
    assert main(["find", run_id, "a triangle", "-k", "4", "--runs-dir", str(store.root), "--out", str(tmp_path)]) == 0
    shown = capsys.readouterr()
    rows = shown.out.strip().splitlines()[1:]
    assert len(rows) == 4 and (tmp_path / "sheet.png").is_file() and (tmp_path / "004.png").is_file()
    assert "searched as the teacher's ImageNet concepts" in shown.err and "None of them is close" not in shown.err
    assert main(["find", run_id, "qwzx blorf", "-k", "2", "--runs-dir", str(store.root)]) == 0
    assert "None of them is close to the text" in capsys.readouterr().err
    example = sorted((shapes_data["examples"] / "square").glob("*.png"))[0]
    assert main(["find", run_id, "--like", str(example), "-k", "5", "--runs-dir", str(store.root)]) == 0
    rows = [r.split() for r in capsys.readouterr().out.strip().splitlines()[1:]]
    assert float(rows[0][1]) > 0.8 and sum(r[-1].rsplit("/", 1)[-1].startswith("square") for r in rows) >= 4
    assert main(["find", run_id, "--runs-dir", str(store.root)]) == 1
    assert "either a text" in capsys.readouterr().err


def test_clean_labels_drops_what_the_student_contradicts(built, monkeypatch):
    """Confident learning after a first round: flipped auto-labels are flagged and logged; examples never are."""
    import multiprocessing

    from agent.stage_label import clean_labels

    def no_fork(*args, **kwargs):
        raise AssertionError("cleanlab forked a worker pool inside a process running torch and faiss threads")

    monkeypatch.setattr(multiprocessing, "Pool", no_fork)
    from agent.stages import StageContext, _training_data, load_student

    store, run_id = built
    ctx = StageContext(run=open_run(store, run_id), show_bars=False)
    inputs, x, y, soft, val, val_y = _training_data(ctx)
    model, _ = load_student(ctx.dir / "student.pt")
    n_pool = len(x) - len(ctx.examples.labels)
    flipped = y.copy()
    rows = np.arange(0, n_pool, max(1, n_pool // 15))[:15]
    flipped[rows] = (y[rows] + 1) % 4
    keep, summary = clean_labels(ctx, model, x, flipped)
    assert keep.shape == (len(x),) and keep[n_pool:].all()  # the user's examples always train
    assert (~keep[rows]).mean() >= 0.6 and summary["flagged"] == int((~keep).sum())
    logged = (ctx.dir / "data" / "label_issues.jsonl").read_text().splitlines()
    assert len(logged) == summary["flagged"] and json.loads(logged[0])["action"] == "dropped"
