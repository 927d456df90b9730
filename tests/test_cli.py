"""Bad input gets one clear sentence and a non-zero exit; `spec` prints or asks."""

from __future__ import annotations

import json
import os
import shutil

import pytest

from agent.cli import COMMANDS, main
from knowledge.errors import NanofactoryError

REQUEST = "tells apart circles, squares, triangles and everything else on an nRF52840"


def _error(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert err, "expected an error message"
    line = err[-1]
    assert line.startswith("error: ")
    assert "Traceback" not in line
    return line


def test_unknown_device(capsys, shapes_data, tmp_path):
    code = main(["build", "sorts cats and dogs", "--images", str(shapes_data["pool"]), "--runs-dir", str(tmp_path)])
    assert code == 2
    line = _error(capsys)
    assert "device" in line and "STM32F446RE" in line and "nRF52840" in line


def test_unknown_device_in_spec_file(capsys, tmp_path):
    spec = tmp_path / "spec.yaml"
    spec.write_text("classes: [{name: cat}]\ndevice: ATmega328\ndata: {pool: [{kind: fashion-mnist}]}\n")
    assert main(["build", "--spec", str(spec), "--runs-dir", str(tmp_path)]) == 1
    line = _error(capsys)
    assert "`device`" in line and "ATmega328" in line and "RP2040" in line


def test_missing_folder(capsys, tmp_path):
    code = main(["build", REQUEST, "--images", str(tmp_path / "nope"), "--runs-dir", str(tmp_path / "runs")])
    assert code == 1
    assert "does not exist" in _error(capsys)
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_missing_test_folder_names_the_test_option_before_a_run_exists(capsys, shapes_data, tmp_path):
    """The test set is read after training; a wrong --test path is still one sentence up front, naming --test."""
    code = main(["build", REQUEST, "--images", str(shapes_data["pool"]), "--examples", str(shapes_data["examples"]),
                 "--test", str(tmp_path / "nope"), "--runs-dir", str(tmp_path / "runs")])
    assert code == 1
    line = _error(capsys)
    assert "does not exist" in line and "--test" in line and "--images" not in line
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


@pytest.mark.parametrize("flags, says", [
    (["--teacher", "clip", "--teacher-model", "/models/no-such-clip"], "--teacher-model /models/no-such-clip: no such folder"),
    (["--generate-model", "./no-such-sd"], "--generate-model ./no-such-sd: no such folder"),
    (["--teacher", "foo"], "Unknown teacher 'foo'; choose one of: clip, efficientnet-lite"),
    (["--teacher-model", "efficientnet-lite9"], "There is no efficientnet-lite9 teacher; use efficientnet-lite0"),
    (["--dedup", "2"], "--dedup takes a cosine similarity above 0 and at most 1"),
    (["--balance", "0.5"], "--balance takes a ratio of 1 or more"),
])
def test_bad_model_paths_and_data_options_are_one_sentence_before_a_run(capsys, shapes_data, tmp_path, flags, says):
    code = main(["build", REQUEST, "--images", str(shapes_data["pool"]), "--runs-dir", str(tmp_path / "runs"), *flags])
    assert code == 1
    assert says in _error(capsys)
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_a_model_folder_mistyped_under_a_local_folder_is_not_taken_for_a_hub_id(monkeypatch, tmp_path):
    from agent.cli_build import model_id_or_path
    from knowledge.io import looks_like_path

    monkeypatch.chdir(tmp_path)
    (tmp_path / "models").mkdir()
    assert looks_like_path("models/clip")  # "models" is a folder here: a path whose last part is wrong
    assert not looks_like_path("openai/clip-vit-base-patch32")
    assert model_id_or_path("openai/clip-vit-base-patch32", "--teacher-model") == "openai/clip-vit-base-patch32"
    with pytest.raises(NanofactoryError, match="--teacher-model models/clip: no such folder"):
        model_id_or_path("models/clip", "--teacher-model")


def test_a_budget_above_the_device_says_the_build_holds_to_the_device(capsys, shapes_data, tmp_path):
    request = "tells apart circles, squares and everything else on an nRF52840 with 2 MB RAM"
    main(["build", request, "--images", str(shapes_data["pool"]), "--dedup", "2", "--runs-dir", str(tmp_path)])
    err = capsys.readouterr().err  # the bad --dedup stops the build right after the note
    assert "allows 2,048 KB of RAM, but the nRF52840 has 256 KB; the build holds to the 256 KB" in err


def test_empty_folder(capsys, tmp_path):
    (tmp_path / "empty").mkdir()
    assert main(["build", REQUEST, "--images", str(tmp_path / "empty"), "--runs-dir", str(tmp_path / "runs")]) == 1
    assert "holds no images" in _error(capsys)


def test_the_whole_disk_is_not_an_image_folder(capsys, tmp_path, monkeypatch):
    """`--images /` (or ~) would walk every file on the machine before saying anything."""
    monkeypatch.setenv("HOME", str(tmp_path))
    for folder, says in (("/", "the whole disk"), (str(tmp_path), "your home folder")):
        assert main(["build", REQUEST, "--images", folder, "--runs-dir", str(tmp_path / "runs")]) == 1
        assert f"is {says}; pass the folder that holds the images with --images" in _error(capsys)


def test_only_corrupt_files(capsys, tmp_path):
    folder = tmp_path / "corrupt"
    folder.mkdir()
    for i in range(3):
        (folder / f"broken{i}.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    assert main(["build", REQUEST, "--images", str(folder), "--runs-dir", str(tmp_path / "runs")]) == 1
    line = _error(capsys)
    assert "could be read" in line and "3" in line


def test_budget_too_small(capsys, shapes_data, tmp_path):
    request = "tells apart circles, squares and everything else on an nRF52840 with 1 KB RAM"
    assert main(["build", request, "--images", str(shapes_data["pool"]), "--runs-dir", str(tmp_path)]) == 1
    line = _error(capsys)
    assert "No student fits" in line and "KB SRAM" in line


def test_malformed_yaml(capsys, tmp_path):
    spec = tmp_path / "bad.yaml"
    spec.write_text("classes: [{name: cat}\ndevice: nRF52840\n")
    assert main(["build", "--spec", str(spec)]) == 1
    line = _error(capsys)
    assert "not valid YAML" in line and "line" in line


def test_spec_field_error_names_the_field(capsys, tmp_path):
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({"classes": [{"name": "cat"}], "device": "nRF52840",
                                "budgets": {"sram_bytes": -5}, "data": {"pool": [{"kind": "fashion-mnist"}]}}))
    assert main(["build", "--spec", str(spec)]) == 1
    assert "budgets.sram_bytes" in _error(capsys)


def test_no_images(capsys):
    assert main(["build", REQUEST]) == 1
    assert "--images" in _error(capsys)


def test_spec_prints_json(capsys):
    assert main(["spec", "sort shirts, bags and everything else on an ESP32-S3 with 256K RAM"]) == 0
    spec = json.loads(capsys.readouterr().out)
    assert spec["device"] == "ESP32-S3"
    assert [c["name"] for c in spec["classes"]] == ["shirt", "bag"]
    assert spec["budgets"]["sram_bytes"] == 256 * 1024 and spec["other"] is True


def test_spec_asks_when_incomplete(capsys):
    assert main(["spec", "a camera that sorts shirts and bags"]) == 2
    assert "device" in _error(capsys)


def test_spec_save_and_build_from_it(capsys, tmp_path):
    out = tmp_path / "spec.yaml"
    assert main(["spec", REQUEST, "--save", str(out)]) == 0
    from agent.spec import DesignSpec

    spec = DesignSpec.load(out)
    assert spec.device == "nRF52840" and spec.label_names == ["circle", "square", "triangle", "other"]


def test_devices_lists_catalog(capsys):
    assert main(["devices"]) == 0
    out = capsys.readouterr().out
    for name in ("STM32F446RE", "STM32F746NG", "STM32H743", "STM32L4R5", "nRF52840", "ESP32-S3", "RP2040",
                 "Raspberry Pi Zero 2 W"):
        assert name in out
    assert "512 MB 16,384 MB" in out  # a Linux board's memory in MB, in its columns (it was 524288 KB)


def test_help_explains(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["build", "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "--images" in out and "--examples" in out and "--resume" in out


@pytest.mark.parametrize("command", sorted(set(COMMANDS) - {"devices"}))  # devices shows its file's format
def test_every_command_shows_examples_and_wraps_its_description(command, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert f"examples:\n  nanofactory {command}" in out
    described = out.split("\n\n")[1]  # after the usage lines
    assert max(len(line) for line in described.splitlines()) <= 80


def test_hidden_labels_match_class_names_in_any_number():
    from agent.data import label_index

    names = ["shirt", "trousers", "sneaker", "other"]
    assert label_index("Trouser", names, other=True) == 1
    assert label_index("Shirt", names, other=True) == 0
    assert label_index("T-shirt/top", names, other=True) == 3  # not a shirt: the 'other' bucket
    assert label_index("Sneaker", names, other=False) == 2
    assert label_index("Bag", names[:3], other=False) == -1


def test_examples_folder_with_an_unknown_class(capsys, shapes_data, tmp_path):
    examples = tmp_path / "examples"
    (examples / "hexagon").mkdir(parents=True)
    runs = tmp_path / "runs"
    assert main(["build", REQUEST, "--images", str(shapes_data["pool"]), "--examples", str(examples),
                 "--runs-dir", str(runs)]) == 1
    line = _error(capsys)
    assert "'hexagon' matches no class" in line and "circle" in line
    assert not runs.exists() or not any(p.is_dir() for p in runs.iterdir())  # no run folder was started


def test_a_class_whose_examples_are_all_unreadable(capsys, shapes_data, tmp_path):
    import shutil

    examples = tmp_path / "examples"
    shutil.copytree(shapes_data["examples"], examples)
    for f in (examples / "square").iterdir():
        f.write_bytes(b"\x89PNG cut short")
    runs = tmp_path / "runs"
    assert main(["build", REQUEST, "--images", str(shapes_data["pool"]), "--examples", str(examples),
                 "--runs-dir", str(runs)]) == 1
    line = _error(capsys)
    assert "None of the 3 example image(s) of 'square' can be read" in line and "square" in line.split("e.g.")[1]
    assert not runs.exists() or not any(p.is_dir() for p in runs.iterdir())  # stopped before the teacher


def test_a_teacher_gpu_that_is_not_there_is_one_sentence(capsys, shapes_data, tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    runs = tmp_path / "runs"
    assert main(["build", REQUEST, "--images", str(shapes_data["pool"]), "--runs-dir", str(runs),
                 "--teacher-device", "cuda"]) == 1
    line = _error(capsys)
    assert "GPU but none is visible" in line and "--teacher-device" in line
    assert not runs.exists() or not any(p.is_dir() for p in runs.iterdir())


def test_max_macs_reads_counts_and_refuses_nonsense(capsys, shapes_data, tmp_path):
    """--max-macs takes 3.5M / 800k / 1_500_000; anything else is one sentence before a run folder exists."""
    from agent.cli_build import parse_count

    assert [parse_count(t) for t in ("3.5M", "800k", "1_500_000", "2,000,000")] == [3_500_000, 800_000,
                                                                                     1_500_000, 2_000_000]
    for bad in ("lots", "nan", "inf", "-1M", "0"):
        with pytest.raises(ValueError):
            parse_count(bad)
    runs = tmp_path / "runs"
    for bad, words in (("lots", "such as 3.5M"), ("20k", "100k or more")):
        assert main(["build", REQUEST, "--images", str(shapes_data["pool"]), "--runs-dir", str(runs),
                     "--max-macs", bad]) == 1
        assert "--max-macs" in (line := _error(capsys)) and words in line
    assert not runs.exists() or not any(runs.iterdir())


def test_negative_loss_weights_are_one_sentence(capsys, shapes_data, tmp_path):
    runs = tmp_path / "runs"
    for flag, example in (("--feature-distill", "0.5"), ("--reverse-ce", "3")):
        assert main(["build", REQUEST, "--images", str(shapes_data["pool"]), "--runs-dir", str(runs), flag, "-1"]) == 1
        assert f"{flag} takes a weight of 0 or more, e.g. {example}." in _error(capsys)
    assert not runs.exists() or not any(runs.iterdir())


def test_reverse_ce_is_on_by_default_and_zero_turns_it_off(capsys, monkeypatch, shapes_data, tmp_path):
    """The build trains with reverse CE 3 unless told otherwise; --reverse-ce 0 is a setting, not a
    missing flag; --epochs 0 is one sentence."""
    import agent.cli_build

    weights = []
    monkeypatch.setattr(agent.cli_build, "execute_run",
                        lambda run, store, args: weights.append(run.plan.step("train").train.reverse_ce) or {})
    build = ["build", REQUEST, "--images", str(shapes_data["pool"]), "--runs-dir", str(tmp_path / "runs")]
    for extra in ([], ["--reverse-ce", "0"], ["--reverse-ce", "1.5"]):
        assert main(build + extra) == 0
    assert weights == [3.0, 0.0, 1.5]
    assert main(build + ["--epochs", "0"]) == 1
    assert "--epochs takes 1 or more (the default is 8)." in _error(capsys)


def test_max_macs_bounds_the_student_and_the_search():
    from agent.parse import spec_from_request
    from agent.plan import InputSpec, offline_plan
    from agent.spec import DataSpec, PoolSource
    from knowledge.devices import get_device
    from tools.cost import estimate_cost
    from tools.search import SearchConfig

    spec = spec_from_request("sorts shirts, bags and everything else on an STM32F446",
                             DataSpec(pool=[PoolSource(kind="fashion-mnist")]))
    device = get_device(spec.device)
    sizes = {}
    for cap in (300_000, 3_500_000):
        plan = offline_plan(spec, InputSpec(size=28, channels=1), search=SearchConfig(), max_macs=cap)
        sizes[cap] = estimate_cost(plan.step("train").student, device).macs
        assert sizes[cap] <= cap and plan.step("search").search.max_macs == cap
    assert sizes[3_500_000] > 2 * sizes[300_000]


def test_the_summary_names_the_weakest_class(tmp_path, capsys):
    """84 % overall can hide a class found one time in nine: the summary says which."""
    from types import SimpleNamespace

    from agent.cli_build import print_summary

    per_class = {"shirt": {"precision": 0.425, "recall": 0.111, "f1": 0.176, "support": 1000},
                 "bag": {"precision": 0.989, "recall": 0.794, "f1": 0.881, "support": 1000},
                 "sandal": {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}}  # not in the test set
    m = {"device": "STM32F446RE", "evaluated_on": "test", "teacher_label_accuracy": 0.823,
         "student_fp32_test_accuracy": 0.841, "student_int8_test_accuracy": 0.841, "oracle_int8_test_accuracy": None,
         "student_oracle_ratio": None, "int8_fp32_top1_agreement": 0.994, "weight_bytes": 25_000,
         "flash_bytes_budget": 512 * 1024, "sram_estimate_bytes": 15_680, "sram_bytes_budget": 128 * 1024,
         "macs": 984_992, "latency_estimate_ms": 13.7, "latency_budget_ms": None, "timings_s": {"total": 262.0},
         "per_class": per_class}
    run = SimpleNamespace(dir=tmp_path, id="r1", spec=SimpleNamespace(budgets=SimpleNamespace(accuracy_floor=None)))
    print_summary(run, m)
    out = capsys.readouterr().out
    assert "weakest class (int8)         shirt: recall 11.1 %, precision 42.5 %" in out
    assert "mean F1 over the outputs     52.8 %" in out  # the class the test set lacks left out
    assert "accuracy floor" not in out
    assert "`nanofactory export r1 DIR` writes the labeled images as class folders" in out
    run.spec.budgets.accuracy_floor = 0.9  # "at least 90 % accuracy": the summary says it was missed
    print_summary(run, {**m, "meets_accuracy_floor": False})
    assert "accuracy floor               90.0 %: NOT met; answer the review (`nanofactory review r1" in capsys.readouterr().out
    run.spec.budgets.accuracy_floor = None
    assert "Next: `nanofactory review r1 --budget 100 --retrain`" in out and "only 11 % of the 'shirt' test" in out
    print_summary(run, {**m, "per_class": {"bag": per_class["bag"]}})
    out = capsys.readouterr().out
    assert "weakest class (int8)         —" in out and "Next:" not in out  # one class: nothing to compare
    unknown = {"zero_shot_on_examples": {"right": 9, "of": 20, "chance": 5, "median_score": 7e-8}, "human_labels": 40}
    print_summary(run, {**m, "per_class": {"bag": per_class["bag"]}, "labeling": unknown})
    out = capsys.readouterr().out
    assert "(you have given 40): the teacher hardly knows these classes by name" in out


def test_compile_input_errors_are_one_sentence(capsys, tmp_path):
    import numpy as np

    onnx_file = tmp_path / "m.onnx"
    onnx_file.write_bytes(b"not onnx")
    text = tmp_path / "text.npy"
    np.save(text, np.array(["a", "b"]))
    junk = tmp_path / "junk.npy"
    junk.write_text("junk")
    cases = [
        (["compile", "--onnx", str(tmp_path / "nope.onnx")], "No ONNX model at"),  # before asking for calibration
        (["compile", str(onnx_file), "--runs-dir", str(tmp_path)], "is an ONNX file, not a run; compile it with"),
        (["compile", "--onnx", str(onnx_file), "--calibration", str(junk)], "is not a numeric .npy array"),
        (["compile", "--onnx", str(onnx_file), "--calibration", str(text)], "not numbers"),
    ]
    for argv, expected in cases:
        assert main(argv) == 1
        assert expected in _error(capsys)


@pytest.mark.parametrize("flags, says", [
    (["--reverse-ce", "inf"], "argument --reverse-ce: takes a finite number"),
    (["--feature-distill", "nan"], "argument --feature-distill: takes a finite number"),
    (["--pool-limit", "0"], "argument --pool-limit: takes a whole number of 1 or more"),
    (["--seed", "-1"], "argument --seed: takes a whole number from 0 to 4294967295"),
    (["--seed", "99999999999999999999"], "argument --seed: takes a whole number from 0 to 4294967295"),
])
def test_numbers_that_slip_past_range_checks_are_refused_by_the_parser(capsys, tmp_path, flags, says):
    """inf and nan pass every >= check (and were saved as null, so the run could not resume); a negative or huge
    seed reached numpy and faiss after the teacher had run."""
    with pytest.raises(SystemExit) as exit_info:
        main(["build", REQUEST, "--images", str(tmp_path), "--runs-dir", str(tmp_path / "runs"), *flags])
    assert exit_info.value.code == 2
    assert says in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


def test_a_pool_too_small_to_learn_from_is_one_sentence(capsys, tmp_path):
    from conftest import write_shapes

    pool = write_shapes(tmp_path / "pool", 1, seed=0)  # one image per kind: 4
    assert main(["build", REQUEST, "--images", str(pool), "--runs-dir", str(tmp_path / "runs")]) == 1
    assert "The pool holds 4 readable image(s); a build needs at least 10" in _error(capsys)


def test_examples_in_a_flat_folder_or_a_file_are_one_sentence(capsys, shapes_data, tmp_path):
    import shutil

    flat = tmp_path / "flat"
    flat.mkdir()
    for f in sorted(shapes_data["examples"].rglob("*.png"))[:3]:
        shutil.copy(f, flat / f.name)
    (flat / ".git").mkdir()  # hidden folders are not classes
    assert main(["build", REQUEST, "--images", str(shapes_data["pool"]), "--examples", str(flat),
                 "--runs-dir", str(tmp_path / "runs")]) == 1
    assert "holds images but no class subfolders" in _error(capsys)
    assert main(["build", REQUEST, "--images", str(shapes_data["pool"]), "--examples", str(flat / f.name),
                 "--runs-dir", str(tmp_path / "runs")]) == 1
    assert "is a file" in _error(capsys)


def test_a_spec_that_is_not_text_and_a_run_design_cut_short_are_one_sentence(capsys, tmp_path):
    spec = tmp_path / "spec.yaml"
    spec.write_bytes(bytes(range(256)))
    assert main(["build", "--spec", str(spec)]) == 1
    assert "is not a text file" in _error(capsys)
    run = tmp_path / "runs" / "20260101-000000-cut"
    run.mkdir(parents=True)
    (run / "design.json").write_text('{"spec": {"classes": [')
    assert main(["build", "--resume", run.name, "--runs-dir", str(tmp_path / "runs")]) == 1
    assert "is not a readable run design" in _error(capsys)


def test_a_plan_that_does_not_match_its_spec_is_one_sentence_before_a_run(capsys, shapes_data, tmp_path):
    from agent.cli_build import spec_from_args
    from agent.plan import InputSpec, offline_plan

    args = argparse_for(["build", REQUEST, "--images", str(shapes_data["pool"])])
    spec = spec_from_args(args)
    plan = json.loads(offline_plan(spec, InputSpec(size=32, channels=3)).model_dump_json())
    for edit, says in ((lambda p: p["steps"].pop(1), "The plan has no teacher step"),
                       (lambda p: p["steps"][3]["student"].update(num_classes=7), "has 7 outputs but the spec has 4"),
                       (lambda p: p["steps"][3]["student"].update(input_size=64), "takes 64x64x3 but its data step")):
        broken = json.loads(json.dumps(plan))
        broken["steps"] = [s for s in broken["steps"] if s["kind"] != "generate"]
        edit(broken)
        path = tmp_path / "plan.json"
        path.write_text(json.dumps({"spec": json.loads(spec.to_json()), "plan": broken}))
        assert main(["run", str(path), "--runs-dir", str(tmp_path / "runs")]) == 1
        assert says in _error(capsys)
    assert not (tmp_path / "runs").exists() or not any(p.is_dir() for p in (tmp_path / "runs").iterdir())


def argparse_for(argv):
    from agent.cli import build_parser

    return build_parser().parse_args(argv)


def test_a_path_the_system_refuses_is_one_sentence(capsys, tmp_path):
    assert main(["spec", REQUEST, "--save", str(tmp_path)]) == 1  # a folder where a file should go
    line = _error(capsys)
    assert str(tmp_path) in line and "pass another path" in line


def test_sigterm_marks_the_run_interrupted_like_ctrl_c(capsys, shapes_data, tmp_path, monkeypatch):
    import os
    import signal

    from agent.runs import RunStore
    from agent.stages import STAGES

    def killed(ctx):
        os.kill(os.getpid(), signal.SIGTERM)  # `kill PID`, a job scheduler's stop

    monkeypatch.setitem(STAGES, "data", killed)
    previous = signal.getsignal(signal.SIGTERM)
    try:
        with pytest.raises(SystemExit) as exit_info:
            main(["build", REQUEST, "--images", str(shapes_data["pool"]), "--runs-dir", str(tmp_path), "--quiet"])
        assert signal.getsignal(signal.SIGTERM) is previous  # main() in-process leaves the caller's handler
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert exit_info.value.code == 130
    (record,) = RunStore(tmp_path).list()
    assert record.status == "interrupted"


def test_a_forked_worker_still_dies_of_sigterm():
    """A library's worker pool forked during a build (cleanlab's, before it ran with n_jobs=1) is
    stopped with SIGTERM: the worker must die of it, not raise KeyboardInterrupt and run Python
    cleanup in a copy of the parent's threads' locks (that hung CI for 80 minutes)."""
    import multiprocessing
    import os
    import signal
    import time

    from agent.cli import _terminated_in

    previous = signal.signal(signal.SIGTERM, _terminated_in(os.getpid()))
    try:
        worker = multiprocessing.get_context("fork").Process(target=time.sleep, args=(60,))
        worker.start()
        time.sleep(0.2)
        worker.terminate()
        worker.join(timeout=20)
        assert worker.exitcode == -signal.SIGTERM
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_spec_flags_each_replace_their_own_field(capsys, shapes_data, tmp_path):
    """`spec` without --images keeps --examples and --test (and says the pool is a stand-in); `build --spec` with
    one data flag replaces that field only: --test alone used to be ignored, --images alone dropped the rest."""
    from agent.cli_build import spec_from_args
    from agent.spec import DesignSpec

    saved = tmp_path / "spec.yaml"
    assert main(["spec", REQUEST, "--examples", str(shapes_data["examples"]), "--test", str(shapes_data["test"]),
                 "--save", str(saved)]) == 0
    assert "note: no --images" in capsys.readouterr().err
    spec = DesignSpec.load(saved)
    assert spec.data.examples_dir == shapes_data["examples"].resolve() and spec.data.test.path is not None
    assert main(["spec", REQUEST, "--images", str(tmp_path / "nope")]) == 1
    assert "--images" in _error(capsys)
    args = argparse_for(["build", "--spec", str(saved), "--images", str(shapes_data["pool"])])
    built = spec_from_args(args)
    assert built.data.pool[0].path == shapes_data["pool"].resolve()
    assert built.data.examples_dir == spec.data.examples_dir and built.data.test == spec.data.test
    limited = spec_from_args(argparse_for(["build", "--spec", str(saved), "--pool-limit", "30"]))
    assert limited.data.pool[0].kind == "fashion-mnist" and limited.data.pool[0].limit == 30


def test_resume_refuses_settings_it_would_ignore_and_takes_a_run_folder(capsys, tmp_path):
    run = tmp_path / "runs" / "20260101-000000-cut"
    run.mkdir(parents=True)
    (run / "design.json").write_text("{}")
    assert main(["build", "--resume", run.name, "--epochs", "5", "--runs-dir", str(tmp_path / "runs")]) == 1
    assert "so --epochs would be ignored" in _error(capsys)
    assert main(["build", "--resume", str(run)]) == 1  # a folder, not an id: read from there (design.json is bad)
    assert f"{run / 'design.json'} is not a readable run design" in _error(capsys)


def test_a_test_subfolder_matching_no_class_is_named(caplog, shapes_data, tmp_path):
    import shutil

    from agent.cli_build import spec_from_args
    from agent.data import load_test

    test = tmp_path / "test"
    shutil.copytree(shapes_data["test"], test)
    (test / "circle").rename(test / "circel")  # misspelt: its images would score as "other" without a word
    spec = spec_from_args(argparse_for(["build", REQUEST, "--images", str(shapes_data["pool"]), "--test", str(test)]))
    _, y = load_test(spec)
    assert "test subfolder(s) circel match no class" in caplog.text and "count as 'other'" in caplog.text
    assert (y == spec.label_names.index("other")).sum() > 0


def test_compile_refuses_nan_weights_nan_calibration_archives_and_open_sizes(capsys, tmp_path):
    import numpy as np
    import onnx
    from onnx import numpy_helper
    from onnx_models import pools_concat_flatten, save

    good = save(pools_concat_flatten(np.random.default_rng(0)), tmp_path / "m.onnx")
    calib = np.random.default_rng(1).uniform(-1, 1, (8, 3, 8, 8)).astype(np.float32)
    np.save(tmp_path / "cal.npy", calib)
    np.savez(tmp_path / "cal.npz", x=calib)
    np.save(tmp_path / "nan.npy", np.where(calib > 0.9, np.nan, calib))
    model = onnx.load(str(good))
    w = model.graph.initializer[0]
    w.CopyFrom(numpy_helper.from_array(np.full(numpy_helper.to_array(w).shape, np.nan, np.float32), w.name))
    save(model, tmp_path / "nan.onnx")
    model = onnx.load(str(good))
    model.graph.input[0].type.tensor_type.shape.dim[2].dim_param = "H"
    save(model, tmp_path / "open.onnx")
    for onnx_file, cal, says in ((good, "cal.npz", "is an .npz archive"), (good, "nan.npy", "NaN or infinite values"),
                                 (tmp_path / "nan.onnx", "cal.npy", "weights hold NaN or infinite values"),
                                 (tmp_path / "open.onnx", "cal.npy", "not fixed at export")):
        assert main(["compile", "--onnx", str(onnx_file), "--calibration", str(tmp_path / cal),
                     "--out", str(tmp_path / "out")]) == 1
        assert says in _error(capsys)
    assert main(["compile", "r1", "--calibration", str(tmp_path / "cal.npy")]) == 1
    assert "--calibration is for --onnx" in _error(capsys)


def test_a_spec_file_reads_relative_paths_from_its_folder_and_class_names_as_strings(capsys, tmp_path, monkeypatch):
    from agent.spec import DesignSpec

    project = tmp_path / "project"
    project.mkdir()
    (project / "spec.yaml").write_text("classes: [cat, dog]\ndevice: nRF52840\n"
                                       "data: {pool: [{kind: folder, path: shots}], examples_dir: examples}\n")
    monkeypatch.chdir(tmp_path)  # elsewhere: the paths are still the project's
    spec = DesignSpec.load(project / "spec.yaml")
    assert [c.name for c in spec.classes] == ["cat", "dog"]
    assert spec.data.pool[0].path == project / "shots" and spec.data.examples_dir == project / "examples"
    assert main(["build", "--spec", str(project / "spec.yaml"), "--runs-dir", str(tmp_path / "runs")]) == 1
    line = _error(capsys)  # the folder is the spec's, not a flag's
    assert str(project / "shots") in line and "data.pool in" in line and "--images" not in line
