"""What the web app shows of one run folder: stage progress, labeled samples, the review queue,
plots, the metrics table and the downloads. Each function reads files a stage already wrote
and returns plain values (rows, PIL images, paths), so it is testable without a browser and
shows whatever part of a run exists so far.

The review queue, and the human labels it stores, are agent.review's: the same queue the
terminal's ``nanofactory review`` uses.
"""

from __future__ import annotations

import html
import io
import json
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from agent.review import REFRESH_EVERY, ReviewItem, label_names, relabel, run_spec
from agent.review import review_queue as _review_queue
from knowledge.devices import core_name
from knowledge.io import read_json_or_none

SAMPLES_PER_CLASS = 5
REVIEW_LIMIT = REFRESH_EVERY  # samples offered for review at a time (agent.review picks them)
THUMB_PX = 96  # gallery thumbnails: small inputs are upscaled, nearest-neighbour
REVIEW_PX = 224
STAGE_NOTES = {
    "data": "read the pool, resize to the student's input",
    "teacher": "teacher embeds every image",
    "label": "auto-label with confidence",
    "generate": "synthesize images for short classes",
    "train": "distil the student from soft labels",
    "quantize": "int8 quantization",
    "evaluate": "accuracy on the test set",
    "compile": "C library + .tflite, verified",
    "report": "metrics.json and report.html",
}
_plot_lock = threading.Lock()  # matplotlib's pyplot (the profile plot) is not thread-safe


@dataclass
class StageRow:
    name: str
    state: str  # "done" | "running" | "waiting" | "failed"
    seconds: float | None
    note: str


# ---- run files ---------------------------------------------------------------------------------


def design(run_dir: Path) -> dict:
    return json.loads((Path(run_dir) / "design.json").read_text())


def stage_names() -> list[str]:
    from agent.stages import STAGES

    return list(STAGES)


def _stage_result(run_dir: Path, stage: str) -> dict | None:
    return read_json_or_none(Path(run_dir) / "stages" / f"{stage}.json")  # unreadable: unfinished, as for --resume


def stage_rows(run_dir: Path, running: bool, status: str | None = None) -> list[StageRow]:
    """One row per stage; the first unfinished one is running while the build is, failed if it stopped."""
    rows, current = [], True
    for name in stage_names():
        result = _stage_result(run_dir, name)
        if result is not None:
            rows.append(StageRow(name, "done", result.get("seconds"), STAGE_NOTES.get(name, "")))
            continue
        state = "waiting"
        if current and running:
            state = "running"
        elif current and status in ("failed", "crashed", "interrupted"):
            state = "failed"
        current = False
        rows.append(StageRow(name, state, None, STAGE_NOTES.get(name, "")))
    return rows


def progress_html(rows: list[StageRow], title: str, message: str | None = None, elapsed: float | None = None) -> str:
    icons = {"done": "✓", "running": "●", "waiting": "·", "failed": "✗"}
    done = sum(r.state == "done" for r in rows)
    body = "".join(
        f"<tr class='{r.state}'><td class='icon'>{icons[r.state]}</td><td class='stage'>{html.escape(r.name)}</td>"
        f"<td class='note'>{html.escape(r.note)}</td>"
        f"<td class='secs'>{'' if r.seconds is None else f'{r.seconds:.1f} s'}"
        f"{f'{elapsed:.0f} s…' if r.state == 'running' and elapsed is not None else ''}</td></tr>"
        for r in rows)
    pct = 100 * done / max(len(rows), 1)
    extra = f"<p class='nf-message'>{html.escape(message)}</p>" if message else ""
    return (f"<div class='nf-progress'><div class='nf-head'><b>{html.escape(title)}</b>"
            f"<span>{done}/{len(rows)} stages</span></div>"
            f"<div class='nf-bar'><div style='width:{pct:.0f}%'></div></div>"
            f"<table>{body}</table>{extra}</div>")


# ---- images ------------------------------------------------------------------------------------


def _to_pil(pixels: np.ndarray, side: int):
    from PIL import Image

    a = np.asarray(pixels)
    a = a[..., 0] if a.ndim == 3 and a.shape[2] == 1 else a
    img = Image.fromarray(a.astype(np.uint8))
    scale = max(1, side // max(img.size))
    return img.resize((img.width * scale, img.height * scale), Image.NEAREST) if scale > 1 else img


def _labels(run_dir: Path) -> tuple[np.ndarray, np.ndarray] | None:
    path = Path(run_dir) / "data" / "labels.npz"
    if not path.is_file():
        return None
    with np.load(path) as z:
        return z["probs"], z["split"]


def samples(run_dir: Path, per_class: int = SAMPLES_PER_CLASS, seed: int = 0) -> list[tuple[object, str]]:
    """Auto-labeled pool samples per class (a seeded random draw, surest first), captioned 'label confidence'."""
    labeled = _labels(run_dir)
    if labeled is None:
        return []
    probs = labeled[0]
    inputs = np.load(Path(run_dir) / "data" / "pool_inputs.npy", mmap_mode="r")
    labels, conf = probs.argmax(1), probs.max(1)
    out = []
    for i, name in enumerate(label_names(run_dir)):
        idx = np.random.default_rng(seed).permutation(np.where(labels == i)[0])[:per_class]
        for j in idx[np.argsort(-conf[idx])]:
            out.append((_to_pil(inputs[j], THUMB_PX), f"{name} {conf[j]:.2f}"))
    return out


def review_queue(run_dir: Path, limit: int = REVIEW_LIMIT, skip=(), fresh: bool = False) -> list[ReviewItem]:
    """The samples whose labels would help most (uncertain and diverse), minus those already labeled
    and ``skip``; ``fresh``: ranked by the pool labeled again with the answers so far (``relabel``,
    seconds), as the terminal's session re-ranks every round."""
    return _review_queue(run_dir, limit, skip=skip, rank_by=relabel(run_dir) if fresh else None)


def review_image(run_dir: Path, item: ReviewItem):
    """The original file when the pool is one folder (sharper for a person), else the student's input."""
    from PIL import Image

    pool = design(run_dir)["spec"]["data"]["pool"]
    if len(pool) == 1 and pool[0].get("kind") == "folder" and pool[0].get("path"):
        path = Path(pool[0]["path"]) / item.uid
        if path.is_file():
            with Image.open(path) as im:
                img = im.convert("RGB")
            scale = max(1, REVIEW_PX // max(img.size))
            if scale > 1:
                img = img.resize((img.width * scale, img.height * scale), Image.NEAREST)
            img.thumbnail((REVIEW_PX * 2, REVIEW_PX * 2))
            return img
    inputs = np.load(Path(run_dir) / "data" / "pool_inputs.npy", mmap_mode="r")
    return _to_pil(inputs[item.index], REVIEW_PX)


# ---- plots -------------------------------------------------------------------------------------


def _png_to_pil(png: bytes):
    from PIL import Image

    return Image.open(io.BytesIO(png)).convert("RGB")


def _fig_to_pil(fig):
    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight", pad_inches=0.1)
    return _png_to_pil(buf.getvalue())


def training_curve(run_dir: Path):
    from agent.report import _history_fig

    train = _stage_result(run_dir, "train")
    return _fig_to_pil(_history_fig(train["history"])) if train and train.get("history") else None


def confusion_matrix(run_dir: Path):
    from agent.report import _confusion_fig

    path = Path(run_dir) / "eval" / "test_confusion.npz"
    if not path.is_file():
        return None
    with np.load(path) as z:
        mats = [("int8 student", z["student"])] + ([("oracle int8 (true labels)", z["oracle"])] if "oracle" in z else [])
    return _fig_to_pil(_confusion_fig(mats, label_names(run_dir), "predicted"))


def layer_profile(run_dir: Path):
    """Per layer: estimated time on the device, weights (flash) and activations (SRAM), from the compiler."""
    import base64

    from compilers.profile import profile_plot_png
    from knowledge.devices import get_device

    compiled = _stage_result(run_dir, "compile")
    if not compiled or not compiled.get("layers"):
        return None
    device = get_device(run_spec(run_dir).device)  # the run's board, known without a devices file
    with _plot_lock:
        png = profile_plot_png(compiled["layers"], device.macs_per_cycle, device.clock_mhz, device.name)
    return _png_to_pil(base64.b64decode(png))


# ---- results -----------------------------------------------------------------------------------


def _pct(v) -> str:
    return "—" if v is None else f"{100 * v:.1f} %"


def _kb(v) -> str:
    return "—" if v is None else f"{v / 1024:.1f} KB"


def metrics_rows(run_dir: Path) -> list[list[str]]:
    from agent.metrics import library_rows, mean_f1, weakest_class_text

    path = Path(run_dir) / "metrics.json"
    if not path.is_file():
        return []
    m = json.loads(path.read_text())
    rows = [["device", m["device"]], ["evaluated on", m["evaluated_on"]],
            ["student int8 accuracy", _pct(m["student_int8_test_accuracy"])],
            ["student fp32 accuracy", _pct(m["student_fp32_test_accuracy"])],
            ["weakest class (int8)", weakest_class_text(m.get("per_class"))],
            ["mean F1 over the outputs", _pct(mean_f1(m))],
            ["oracle int8 accuracy", _pct(m["oracle_int8_test_accuracy"])],
            ["teacher label accuracy", _pct(m["teacher_label_accuracy"])],
            ["int8 / fp32 agreement", _pct(m["int8_fp32_top1_agreement"])],
            ["weights (flash)", f"{_kb(m['weight_bytes'])} of {_kb(m['flash_bytes_budget'])}"],
            ["SRAM (arena)", f"{_kb(m['sram_estimate_bytes'])} of {_kb(m['sram_bytes_budget'])}"],
            *[list(row) for row in library_rows(m)],
            ["MACs", f"{m['macs']:,}"],
            ["latency estimate", f"{m['latency_estimate_ms']:.1f} ms"
             + (f" (budget {m['latency_budget_ms']:g} ms)" if m.get("latency_budget_ms") else "")],
            *([["latency, this C library", f"at least {m['latency_floor_ms']:.1f} ms "
                f"({m['instructions_per_inference'] / 1e6:.2f} M instructions on the emulated core)"]]
              if m.get("latency_floor_ms") else []),
            ["build time", f"{(m.get('timings_s') or {}).get('total', 0):.0f} s"]]
    c = m.get("compiled") or {}
    if c.get("tflm_vs_c_bitexact") is not None:
        rows.append(["C library vs TFLite Micro", f"{_pct(c['tflm_vs_c_bitexact'])} bit-exact"])
    if c.get("frames"):
        rows.append(["camera frames to inputs in C", f"{_pct(c['frames']['frames_bitexact'])} bit-exact with training"])
    for core, v in (c.get("cortex_m") or {}).items():
        if isinstance(v, dict):
            rows.append([f"C library on an emulated {core_name(core)}",
                         f"{_pct(v['bitexact'])} bit-exact ({v['inputs']:,} inputs, QEMU)"])
    return rows


def zip_c_library(run_dir: Path, out: Path) -> Path | None:
    """compiled/c as one zip (folder <run>-c/ inside), written atomically to ``out``."""
    from compilers.arduino import zip_library

    source = Path(run_dir) / "compiled" / "c"
    return zip_library(source, out, top=f"{Path(run_dir).name}-c") if source.is_dir() else None


def downloads(run_dir: Path, out_dir: Path) -> list[Path]:
    """The run's deliverables that exist so far, copied to ``out_dir`` for serving: int8 ONNX, .tflite,
    the C library zip, the Arduino library zip, the class names, every image's label as CSV, the report.
    Copies, so the web server never serves the runs folder itself."""
    import shutil

    run_dir, out_dir = Path(run_dir), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    out = []
    for source in (run_dir / "model_int8.onnx", run_dir / "compiled" / "model.tflite", "c",
                   run_dir / "compiled" / "labels.txt", "data", run_dir / "report.html"):
        if source == "data":
            if (run_dir / "data" / "manifest.jsonl").is_file():
                from agent.export import labels_csv

                out.append(labels_csv(run_dir, out_dir / f"{run_dir.name}-image-labels.csv"))
        elif source == "c":
            zipped = zip_c_library(run_dir, out_dir / f"{run_dir.name}-c-library.zip")
            out += [zipped] if zipped else []
            libraries = sorted((run_dir / "compiled" / "arduino").glob("*/library.properties"))
            if libraries:
                from compilers.arduino import zip_library

                out.append(zip_library(libraries[0].parent, out_dir / f"{run_dir.name}-arduino.zip"))
        elif source.is_file():
            target = out_dir / f"{run_dir.name}-{source.name}"
            shutil.copyfile(source, target)
            out.append(target)
    return out


NO_REPORT = "<p class='nf-muted'>No report yet: it is written when the build finishes.</p>"


def report_iframe(run_dir: Path) -> str:
    """The self-contained report.html, isolated from the app's styles in an iframe."""
    path = Path(run_dir) / "report.html"
    if not path.is_file():
        return NO_REPORT
    return (f"<iframe class='nf-report' title='report' sandbox srcdoc=\"{html.escape(path.read_text(), quote=True)}\">"
            "</iframe>")
