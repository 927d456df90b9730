"""The run report: one self-contained HTML page with inlined PNG plots, escaped user text."""

from __future__ import annotations

import base64
import io
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from agent.report import SAMPLE_MIN_PX, ReportInputs, write_report
from agent.spec import DesignSpec

REQUEST = 'sort <script>alert("x")</script> shirts & bags on an STM32F446'
IMG_SRC = re.compile(r"<img [^>]*src='data:image/png;base64,([A-Za-z0-9+/=]+)'")


def _spec(request: str | None = REQUEST) -> DesignSpec:
    return DesignSpec.from_dict({"classes": [{"name": "shirt"}, {"name": "bag"}], "device": "STM32F446RE",
                                 "data": {"pool": [{"kind": "fashion-mnist"}]}, "request": request})


def _metrics(labels: list[str]) -> dict:
    return {
        "teacher_label_accuracy": 0.91, "student_fp32_test_accuracy": 0.88, "student_int8_test_accuracy": 0.87,
        "oracle_int8_test_accuracy": 0.93, "int8_fp32_top1_agreement": 0.985, "onnx_max_abs_diff": 3.1e-6,
        "weight_bytes": 41_000, "flash_bytes_budget": 512 * 1024, "sram_estimate_bytes": 60_000,
        "sram_bytes_budget": 128 * 1024, "macs": 2_400_000, "params": 40_000, "latency_estimate_ms": 33.3,
        "latency_budget_ms": 50.0, "device": "STM32F446RE",
        "timings_s": {"label": 12.0, "train": 40.5, "quantize": 3.2, "total": 55.7},
        "per_class": {n: {"precision": 0.9, "recall": 0.8, "f1": 0.85, "support": 100} for n in labels},
        "labeling": {"pool_size": 6000, "labeled_for_training": 5400, "low_confidence": 600,
                     "examples_per_class": {n: 1800 for n in labels}, "skipped_images": 2,
                     "spot_checks": {"agreed": 8, "of": 10, "accuracy": 0.8, "interval_95": [0.49, 0.943]},
                     "spot_check_classes": {"shirt": {"checked": 4, "labeled": 2, "agreed": 1},
                                            "bag": {"checked": 6, "labeled": 8, "agreed": 6}},
                     "zero_shot_on_examples": {"right": 8, "of": 20, "chance": 5.0, "median_score": 9.1e-8}},
        "student": {"arch": "mobilenet-tiny", "width": 0.25, "input": [28, 28, 1]},
        "fits_flash": True, "fits_sram": True, "meets_latency": True,
    }


def _full_inputs(run_id: str = "run-2024-abc") -> ReportInputs:
    rng = np.random.default_rng(0)
    spec = _spec()
    labels = spec.label_names
    k = len(labels)
    conf_mat = rng.integers(0, 30, size=(k, k)) + np.eye(k, dtype=int) * 100
    samples = {n: [(rng.integers(0, 256, size=(28, 28, 1), dtype=np.uint8), float(rng.uniform(0.5, 1)))
                   for _ in range(4)] for n in labels}
    samples["bag"].append((rng.integers(0, 256, size=(16, 20, 3), dtype=np.uint8), 0.7))  # RGB, non-square
    return ReportInputs(
        run_id=run_id, spec=spec, metrics=_metrics(labels), label_names=labels,
        test_confusion=conf_mat, oracle_confusion=conf_mat + 5, teacher_confusion=conf_mat * 2,
        samples=samples, confidence=rng.beta(5, 2, size=500), min_confidence=0.6,
        history=[{"epoch": e, "train_loss": 1.0 / (e + 1), "val_accuracy": 0.5 + 0.04 * e} for e in range(10)],
        concepts={"shirt": [("jersey, T-shirt", 0.7), ("sweatshirt", 0.3)], "bag": [("purse", 1.0)]},
    )


def test_full_report_is_self_contained(tmp_path: Path) -> None:
    inputs = _full_inputs()
    out = tmp_path / "report.html"
    write_report(inputs, out)
    text = out.read_text()

    assert "run-2024-abc" in text
    for name in inputs.label_names:
        assert f">{name}<" in text
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in text
    assert "<script" not in text.lower()
    assert "jersey, T-shirt" in text and "mobilenet-tiny" in text
    assert "class='verdict good'><b>fits</b>" in text
    assert "80.0% (8 of 10; 95 % interval 49.0%–94.3%)" in text  # the data card's spot checks
    assert "<td>1 (25 %)</td><td>2</td><td>1 (50 %)</td>" in text  # ... and per class: shirts found 1 of 4
    # how the class descriptions score the examples, and what that means
    assert "right class scored highest on 8 of 20 (chance 5); median score of the right class 9.1e-08: the " \
           "teacher hardly knows these classes by name" in text
    # no external assets: every src is inline data
    assert not re.search(r"(src|href)=['\"](?!data:)", text)

    pngs = IMG_SRC.findall(text)
    n_samples = sum(len(v) for v in inputs.samples.values())
    plots = 5  # confusion (student + oracle in one figure), teacher, confidence, training curve, timings
    assert len(pngs) == plots + n_samples
    assert text.count("<img") == len(pngs)
    for data in pngs:
        assert base64.b64decode(data).startswith(b"\x89PNG")


def test_samples_are_upscaled_nearest(tmp_path: Path) -> None:
    inputs = _full_inputs()
    src = np.zeros((28, 28, 1), np.uint8)
    src[::2, ::2] = 255  # a checkerboard only survives nearest-neighbour scaling
    inputs.samples = {"shirt": [(src, 0.93)]}
    out = tmp_path / "report.html"
    write_report(inputs, out)
    text = out.read_text()
    sample = re.search(r"<img class='sample'[^>]*base64,([A-Za-z0-9+/=]+)'", text).group(1)
    img = np.asarray(Image.open(io.BytesIO(base64.b64decode(sample))))
    assert img.shape[0] >= SAMPLE_MIN_PX and img.shape[0] % 28 == 0
    assert set(np.unique(img)) == {0, 255}
    assert "0.93" in text


def test_optional_parts_missing_still_render(tmp_path: Path) -> None:
    spec = _spec(request=None)
    inputs = ReportInputs(
        run_id="bare", spec=spec, metrics={"fits_flash": False, "weight_bytes": 900_000,
                                           "flash_bytes_budget": 512 * 1024},
        label_names=spec.label_names, test_confusion=None, oracle_confusion=None, teacher_confusion=None,
        samples={}, confidence=np.zeros(0), min_confidence=0.5, history=[], concepts={},
    )
    out = tmp_path / "sub" / "report.html"
    write_report(inputs, out)
    text = out.read_text()
    assert "bare" in text and "class='verdict bad'><b>does not fit</b>" in text
    assert "—" in text
    assert "<img" not in text
    assert list(out.parent.iterdir()) == [out]  # the atomic write left no temp file behind


def test_student_only_confusion(tmp_path: Path) -> None:
    inputs = _full_inputs()
    inputs.oracle_confusion = None
    inputs.teacher_confusion = None
    inputs.test_confusion = np.zeros((3, 3), int)  # empty rows must not divide by zero
    write_report(inputs, tmp_path / "r.html")
    assert "No ground truth for the pool." in (tmp_path / "r.html").read_text()


def test_import_is_cheap() -> None:
    code = "import sys, agent.report; assert 'matplotlib' not in sys.modules and 'PIL' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parents[1])
