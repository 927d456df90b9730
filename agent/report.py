"""One self-contained ``report.html`` per run: tables plus plots inlined as base64 PNG.

The page has no scripts and no external assets, so it opens offline and can be mailed
as a single file. Every piece of user text goes through ``html.escape``; missing
metrics show as "—" rather than failing the render.
"""

from __future__ import annotations

import base64
import html
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from agent.spec import DesignSpec
from knowledge.devices import core_name
from knowledge.io import write_text_atomic
from knowledge.labeling import ZERO_SHOT_KNOWN

if TYPE_CHECKING:
    from matplotlib.figure import Figure

DASH = "—"
SAMPLE_MIN_PX = 72  # small images (28 px Fashion-MNIST) are upscaled to at least this, nearest-neighbour


@dataclass
class ReportInputs:
    run_id: str
    spec: DesignSpec
    metrics: dict
    label_names: list[str]
    test_confusion: np.ndarray | None = None
    oracle_confusion: np.ndarray | None = None
    teacher_confusion: np.ndarray | None = None
    samples: dict[str, list[tuple[np.ndarray, float]]] = field(default_factory=dict)
    confidence: np.ndarray = field(default_factory=lambda: np.zeros(0))
    min_confidence: float = 0.0
    history: list[dict] = field(default_factory=list)
    concepts: dict[str, list[tuple[str, float]]] = field(default_factory=dict)
    layers: list[dict] = field(default_factory=list)  # the compiler's per-layer profile
    pareto_png: str | None = None  # base64 PNG from the search stage
    device: Any = None  # knowledge.devices.Device, for the profile's cycle estimate
    synthetic_samples: dict[str, list[tuple[np.ndarray, float]]] = field(default_factory=dict)  # kept, with confidence


def write_report(inputs: ReportInputs, path: Path) -> None:
    """Render the run's report and write it atomically to ``path``."""
    write_text_atomic(Path(path), render_report(inputs))


def render_report(inputs: ReportInputs) -> str:
    m, labels = inputs.metrics, inputs.label_names
    esc = html.escape
    sections = [
        _section("Summary", _summary_table(m, inputs.spec)),
        _section("Cost vs budget", _cost_table(m)),
        _section("Architecture search", _search_block(inputs)),
        _section("Deployment: C library and .tflite", _deploy_block(inputs)),
        _section("Per-class metrics (int8 student, test set)", _per_class_table(m, labels)),
        _section("Confusion matrix (test set, row-normalised)", _confusion_plots(inputs)),
        _section("Teacher labels vs hidden truth (pool)",
                 _img(_confusion_fig([("auto-label vs truth", inputs.teacher_confusion)], labels, "auto-label"))
                 if inputs.teacher_confusion is not None else _na("No ground truth for the pool.")),
        _section("Data card", _data_card(inputs) + _confidence_block(inputs)),
        _section("Synthetic data (data card)", _synthetic_block(inputs)),
        _section("Training curve (student)",
                 _img(_history_fig(inputs.history)) if inputs.history else _na("No training history recorded.")),
        _section("Auto-labeled samples", _samples_grid(inputs.samples, labels)),
        _section("Class → ImageNet concepts", _concepts_table(inputs.concepts, labels)),
        _section("Time per stage", _timings_block(m.get("timings_s") or {})),
    ]
    request = inputs.spec.request
    head = (f"<h1>Nanofactory report</h1>"
            f"<p class='request'>{esc(request) if request else '<span class=muted>(no request text)</span>'}</p>"
            f"<p class='meta'>device <b>{esc(inputs.spec.device)}</b> · run <code>{esc(inputs.run_id)}</code> · "
            f"labels {esc(', '.join(labels))}</p>{_verdict(m)}")
    return (f"<!doctype html><html lang='en'><head><meta charset='utf-8'>"
            f"<title>Nanofactory · {esc(inputs.run_id)}</title><style>{_CSS}</style></head>"
            f"<body><main>{head}{''.join(sections)}</main></body></html>\n")


# ---- formatting --------------------------------------------------------------------------

def _num(v: Any, fmt: str = "{:,}") -> str:
    return DASH if v is None else html.escape(fmt.format(v))


def _pct(v: Any) -> str:
    return _num(v, "{:.1%}")


def _kib(v: Any) -> str:
    return DASH if v is None else f"{v / 1024:,.1f}\u00a0KiB"  # no break between number and unit


def _ms(v: Any) -> str:
    return _num(v, "{:,.1f} ms")


def _na(text: str) -> str:
    return f"<p class='muted'>{html.escape(text)}</p>"


def _section(title: str, body: str) -> str:
    return f"<section><h2>{html.escape(title)}</h2>{body}</section>"


def _table(header: list[str], rows: list[list[str]]) -> str:
    """Cells are already-escaped HTML; the header is plain text."""
    th = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>"


def _bar(used: Any, budget: Any) -> str:
    if used is None or not budget:
        return DASH
    frac = used / budget
    cls = "over" if frac > 1 else "warn" if frac > 0.8 else "ok"
    return (f"<span class='nowrap'><span class='bar'><span class='{cls}' style='width:{min(frac, 1) * 100:.1f}%'>"
            f"</span></span><span class='barlabel'>{frac:.0%}</span></span>")


def _verdict(m: dict) -> str:
    checks = [m.get("fits_flash"), m.get("fits_sram"), m.get("meets_latency")]
    if False in checks:
        word, cls = "does not fit", "bad"
    elif checks[0] is True and checks[1] is True:
        word, cls = "fits", "good"
    else:
        word, cls = "fit unknown", "muted"
    parts = [f"weights {_kib(m.get('weight_bytes'))} of {_kib(m.get('flash_bytes_budget'))} flash",
             f"SRAM {_kib(m.get('sram_estimate_bytes'))} of {_kib(m.get('sram_bytes_budget'))}",
             f"latency {_ms(m.get('latency_estimate_ms'))}"
             + (f" of {_ms(m['latency_budget_ms'])}" if m.get("latency_budget_ms") is not None else " (no limit)")]
    library = []  # measured on the device's core
    if m.get("library_flash_bytes") is not None:
        library += [f"{_kib(m['library_flash_bytes'])} flash", f"{_kib(m.get('library_ram_bytes'))} RAM with its stack"]
    if m.get("latency_floor_ms"):
        library.append(f"at least {_ms(m['latency_floor_ms'])}")
    text = ", ".join(parts) + (f"; this C library: {', '.join(library)}" if library else "")
    return f"<p class='verdict {cls}'><b>{word}</b> — {html.escape(text)}</p>"


# ---- tables ------------------------------------------------------------------------------

def _summary_table(m: dict, spec: DesignSpec) -> str:
    student, oracle = m.get("student_int8_test_accuracy"), m.get("oracle_int8_test_accuracy")
    ratio = student / oracle if student is not None and oracle else None
    lab, arch = m.get("labeling") or {}, m.get("student") or {}
    rows = [
        ["teacher label accuracy (pool)", _pct(m.get("teacher_label_accuracy"))],
        ["student fp32 test accuracy", _pct(m.get("student_fp32_test_accuracy"))],
        ["student int8 test accuracy", f"<b>{_pct(student)}</b>"],
        ["oracle int8 test accuracy (true labels)", _pct(oracle)],
        ["student / oracle", _pct(ratio)],
        ["accuracy floor (spec)", _pct(spec.budgets.accuracy_floor)],
        ["int8 / fp32 top-1 agreement", _pct(m.get("int8_fp32_top1_agreement"))],
        ["ONNX max abs diff", _num(m.get("onnx_max_abs_diff"), "{:.2e}")],
        ["student", html.escape(f"{arch.get('arch', DASH)}, width {arch.get('width', DASH)}, "
                                f"input {'×'.join(map(str, arch.get('input') or [])) or DASH}")],
        ["pool / used for training / low confidence / skipped",
         " / ".join(_num(lab.get(k)) for k in ("pool_size", "labeled_for_training", "low_confidence", "skipped_images"))],
    ]
    return _table(["", "value"], rows)


def _cost_table(m: dict) -> str:
    rows = [
        ["flash (weights)", _kib(m.get("weight_bytes")), _kib(m.get("flash_bytes_budget")),
         _bar(m.get("weight_bytes"), m.get("flash_bytes_budget"))],
        ["SRAM (planned arena)", _kib(m.get("sram_estimate_bytes")), _kib(m.get("sram_bytes_budget")),
         _bar(m.get("sram_estimate_bytes"), m.get("sram_bytes_budget"))],
        *([["flash, this C library (code and weights, built for the device's core)", _kib(m["library_flash_bytes"]),
             _kib(m.get("flash_bytes_budget")), _bar(m["library_flash_bytes"], m.get("flash_bytes_budget"))],
           [(f"RAM, this C library (arena + {_num(m.get('stack_bytes'))} B of stack, the most an inference used "
             "on the emulated core)"), _kib(m.get("library_ram_bytes")), _kib(m.get("sram_bytes_budget")),
            _bar(m.get("library_ram_bytes"), m.get("sram_bytes_budget"))]]
          if m.get("library_flash_bytes") is not None and m.get("library_ram_bytes") is not None else []),
        ["latency (estimate from MACs)", _ms(m.get("latency_estimate_ms")), _ms(m.get("latency_budget_ms")),
         _bar(m.get("latency_estimate_ms"), m.get("latency_budget_ms"))],
        *([[(f"latency, this C library (at least: {m['instructions_per_inference'] / 1e6:.2f} M instructions, "
             "emulated core)"), _ms(m["latency_floor_ms"]), _ms(m.get("latency_budget_ms")),
            _bar(m["latency_floor_ms"], m.get("latency_budget_ms"))]] if m.get("latency_floor_ms") else []),
        ["MACs", _num(m.get("macs")), DASH, DASH],
        ["params", _num(m.get("params")), DASH, DASH],
    ]
    return _table(["resource", "used", "budget", "% of budget"], rows)


def _search_block(inputs: ReportInputs) -> str:
    r = inputs.metrics.get("search")
    if not r:
        return _na("No search in this plan: the fixed DS-CNN sized to the budget was trained.")
    if r.get("note"):
        return f"<p>{html.escape(r['note'])} The fixed student was kept.</p>"
    fixed = r["fixed"]
    rows = [[html.escape(t["name"]), _pct(t.get("val_accuracy")), _kib(t.get("sram_bytes")), _kib(t.get("weight_bytes")),
             _num(t.get("macs")), _ms(t.get("latency_ms")), _ms(t.get("floor_ms"))] for t in r.get("trained") or []]
    rows.append([f"fixed: {html.escape(fixed['name'])}", _pct(fixed.get("val_accuracy")),
                 _kib(fixed["cost"]["sram_bytes"]), _kib(fixed["cost"]["weight_bytes"]), _num(fixed["cost"]["macs"]),
                 _ms(fixed["cost"]["latency_ms"]), _ms(fixed["cost"].get("floor_ms"))])
    head = (f"<p>{_num(r['scored'])} architectures of the <b>{html.escape(r['space'])}</b> space scored with "
            f"{html.escape(' + '.join(r['proxies']))} in {r['seconds_scoring']:.0f} s under the budgets "
            f"({_num(r['rejected_over_budget'])} over budget were not scored); the top by proxy and the fixed "
            f"student were trained the same short way ({r['seconds_training']:.0f} s). Chosen: "
            f"<b>{html.escape(r['best'])}</b> ({html.escape(r['chosen'])}).</p>")
    body = head + _table(["candidate", "val acc (short)", "SRAM", "flash", "MACs", "latency (estimate)",
                          "this C library at least (predicted)"], rows)
    if inputs.pareto_png:
        body += f"<img class='plot' alt='search pareto' src='data:image/png;base64,{inputs.pareto_png}'>"
    return body + ("<p class='muted'>Short training ranks networks by how fast they learn, and validation on "
                   "auto-labels by how closely they copy the labeler: both favour larger networks whether or not "
                   "they end up more accurate (README, <code>bench/nas.py --widths --short</code>). All scored "
                   "candidates: <code>search/candidates.csv</code></p>")


def _deploy_block(inputs: ReportInputs) -> str:
    c = inputs.metrics.get("compiled")
    if not c:
        return _na("Not compiled in this run.")
    arm = c.get("arm") or {}
    m4 = arm.get("cortex-m4")
    rows = [
        ["tensor arena (planned, exact)", f"{_num(c['arena_bytes'])} B",
         "= SRAM estimate before compiling" if c.get("sram_estimate_matches_arena") else "differs from the estimate"],
        ["TFLite Micro arena for the same .tflite",
         f"{_num(c.get('tflm_arena_head_bytes'))} B tensors, {_num(c.get('tflm_arena_total_bytes'))} B total",
         f"ours / TFLM tensors = {c['arena_ratio_vs_tflm_head']:.2f}" if c.get("arena_ratio_vs_tflm_head") else DASH],
        ["Cortex-M4 build (arm-none-eabi-size)",
         f"text {_num(m4['text'])} B · data {_num(m4['data'])} B · bss {_num(m4['bss'])} B" if m4
         else html.escape(str(arm.get("skipped", DASH))), "text = flash (weights + kernels), bss = RAM"
         + "".join(f"; {html.escape(k)}.o {_num(v['text'])} B more when used" for k, v in ((m4 or {}).get("extras") or {}).items())],
        ["C library vs numpy int8 reference", _pct(c.get("c_vs_reference_bitexact")),
         f"bit-exact, {_num(c.get('samples'))} inputs"],
        ["C library vs TFLite Micro", _pct(c.get("tflm_vs_c_bitexact")),
         f"bit-exact, {_num(c.get('runtime_samples'))} inputs"],
        ["C library vs LiteRT (reference kernels)", _pct(c.get("litert_vs_c_bitexact")), "bit-exact"],
        ["model.tflite in LiteRT's default kernels (XNNPACK)", _pct(c.get("litert_optimized_vs_c_top1_agreement")),
         f"top-1 agreement with the C library; they round differently: {_pct(c.get('litert_optimized_vs_c_bitexact'))} "
         f"bit-exact, outputs at most {_num(c.get('litert_optimized_vs_c_max_steps'))} step(s) apart"],
        *[[f"C library on an emulated {html.escape(core_name(core))}", _pct(v["bitexact"]),
           f"bit-exact with the host build, {_num(v['inputs'])} inputs (bare metal, {html.escape(v['board'])})"
           + (f"; {_num(v['instructions'])} instructions per inference" if v.get("instructions") else "")
           + (f"; {_num(v['stack_bytes'])} B of stack at most" if v.get("stack_bytes") is not None else "")
           + "".join(f"; a {html.escape(size)} camera frame to its input: {_num(n)} instructions"
                     + (f" and {_num(v['frame_stack_bytes'])} B of stack" if v.get("frame_stack_bytes") is not None else "")
                     for size, n in (v.get("frame_instructions") or {}).items())
           + (f"; camera frames to inputs {_pct(v['frames_bitexact'])} bit-exact with training on {v['frames_checked']} frames"
              if v.get("frames_checked") else "")]
          for core, v in (c.get("cortex_m") or {}).items() if isinstance(v, dict)],
        *([["camera frames to inputs in C (nf_io.h)", _pct(c["frames"]["frames_bitexact"]),
            f"bit-exact with the training images' preparation, {c['frames']['frames_checked']} random frames "
            f"({', '.join(c['frames']['frame_sizes'])}; {', '.join(c['frames'].get('formats') or ['gray', 'rgb'])})"]]
          if c.get("frames") else []),
        ["int8 C library accuracy", _pct(c.get("c_int8_accuracy")), f"fp32 model {_pct(c.get('fp32_accuracy'))}"],
        ["model_int8.onnx in onnxruntime's fused kernels", _pct(c.get("onnxruntime_fused_vs_qdq_top1_agreement")),
         f"top-1 agreement with its QDQ arithmetic (the reported int8 accuracy), {_num(c.get('samples'))} inputs"],
        ["host latency, one thread", f"C {_num(c.get('c_latency_us'), '{:.0f}')} µs",
         f"onnxruntime int8 {_num(c.get('onnxruntime_int8_latency_us'), '{:.0f}')} µs"],
    ]
    body = _table(["", "value", "note"], rows)
    if inputs.layers and inputs.device is not None:
        from compilers.profile import profile_plot_png

        d = inputs.device
        measured = ((c.get("cortex_m") or {}).get(d.emulated_core or "") or {}).get("layer_instructions")
        floor = [d.latency_floor_ms(v) for v in measured] if measured and len(measured) == len(inputs.layers) else None
        png = profile_plot_png(inputs.layers, d.macs_per_cycle, d.clock_mhz, d.name, floor)
        body += f"<img class='plot' alt='per-layer profile' src='data:image/png;base64,{png}'>"
        if floor:
            body += _na(f"Estimate: MACs at {d.macs_per_cycle:g} MAC/cycle, what CMSIS-NN class kernels reach on this "
                        f"core (MLPerf Tiny). At least: this C library's instructions per layer on the emulated "
                        f"{core_name(d.emulated_core)} at {d.clock_mhz:g} MHz, "
                        f"{d.issue_width} per cycle at most; "
                        "flash wait states and multi-cycle loads add to it on the board.")
    if c.get("frames"):
        body += _usage_snippet(inputs, c)
    return body + f"<p class='muted'>Files: <code>{html.escape(c['dir'])}</code> (model.tflite, labels.txt, c/, arduino/)</p>"


def _usage_snippet(inputs: ReportInputs, c: dict) -> str:
    """This model in a firmware: the few calls, with its own sizes and class names."""
    size, _, channels = (inputs.metrics.get("student") or {}).get("input") or (0, 0, 0)
    if not size:
        return ""
    code = (
        '#include "nf_io.h"  /* compiled/c: build model.c, nf_kernels.c, nf_io.c with your firmware */\n\n'
        "static nf_image_t image;\n"
        f"static int8_t input[NF_INPUT_SIZE], output[NF_OUTPUT_SIZE];  /* {size * size * channels} and "
        f"{len(inputs.label_names)} bytes */\n\n"
        "nf_image_init(&image, 320, 240, NF_RGB888);  /* once: your camera's frame size; NF_GRAY8 for gray */\n"
        f"nf_image_to_input(&image, frame, input);     /* any size -> {size} x {size} x {channels}, as in training */\n"
        f"nf_invoke(input, output);                    /* {c['arena_bytes']:,} B of static arena */\n"
        "const char *what = nf_labels[nf_argmax(output)];  /* "
        + ", ".join(inputs.label_names).replace("*/", "* /") + " */"
    )
    return ("<p>In a firmware (the Arduino library's <code>Selftest</code> sketch checks a board first):</p>"
            f"<pre class='code'>{html.escape(code)}</pre>")


def _per_class_table(m: dict, labels: list[str]) -> str:
    per_class = m.get("per_class") or {}
    train_n = (m.get("labeling") or {}).get("examples_per_class") or {}
    names = labels + [k for k in per_class if k not in labels]
    rows = [[html.escape(n)] + [_num((per_class.get(n) or {}).get(k), "{:.3f}") for k in ("precision", "recall", "f1")]
            + [_num((per_class.get(n) or {}).get("support")), _num(train_n.get(n))] for n in names]
    return _table(["class", "precision", "recall", "F1", "test support", "training examples"], rows)


def _data_card(inputs: ReportInputs) -> str:
    """Where every training sample came from, what the data engine removed, and how good the labels are."""
    m = inputs.metrics
    lab = m.get("labeling") or {}
    esc = html.escape
    syn = m.get("synthetic") or {}
    examples = lab.get("examples_per_class") or {}
    sources = [
        [esc(str(lab.get("pool_source", DASH))), _num(lab.get("pool_size")), "teacher auto-label",
         f"{_num(lab.get('skipped_images'))} unreadable skipped"],
        ["example images (user)", _num(sum(examples.values()) if examples else None), "given by the user",
         esc(", ".join(f"{k} {v}" for k, v in examples.items()) or DASH)],
        ["review answers (human)", _num(lab.get("human_labels")), "a person, in review",
         f"{_num(lab.get('human_rejected'))} called none of these" if lab.get("human_rejected") else DASH],
    ]
    if syn.get("kept"):
        sources.append(["synthetic", _num(syn.get("kept")), esc(str(syn.get("generator") or "generator")),
                        f"gate rejected {_pct(syn.get('rejection_rate'))}"])
    body = _table(["source", "images", "labels from", "note"], sources)
    counts = lab.get("label_counts") or {}
    body += _table(["class", "training + validation images"],
                   [[esc(k), _num(v)] for k, v in counts.items()] or [[DASH, DASH]])
    removed = [
        ("below the confidence threshold", lab.get("low_confidence")),
        (f"near-duplicates ({_num(lab.get('duplicate_groups'))} groups, one kept each)", lab.get("duplicates_removed")),
        ("over the class-balance cap or diversity budget", lab.get("capped")),
    ]
    body += _table(["kept out of training", "images"], [[esc(k), _num(v)] for k, v in removed])
    quality = []
    if m.get("teacher_label_accuracy") is not None:
        quality.append(["auto-label accuracy vs hidden labels (whole pool)", _pct(m["teacher_label_accuracy"])])
        quality.append(["… on the images kept for training", _pct(m.get("teacher_label_accuracy_kept"))])
    checks = lab.get("spot_checks")
    if checks:
        lo, hi = checks["interval_95"]
        what = "auto-label accuracy on spot checks (random pool images a person labeled, each against its run)"
        value = f"{_pct(checks['accuracy'])} ({checks['agreed']} of {checks['of']}; 95 % interval {_pct(lo)}–{_pct(hi)})"
        quality.append([what, value])
    zs = lab.get("zero_shot_on_examples")
    if zs:
        value = (f"right class scored highest on {zs['right']} of {zs['of']} (chance {zs['chance']:g}); "
                 f"median score of the right class {zs['median_score']:.2g}")
        if zs["median_score"] < ZERO_SHOT_KNOWN:
            value += ": the teacher hardly knows these classes by name, so the labels rest on the examples " \
                     "(more examples, or a CLIP teacher, would help)"
        quality.append(["class descriptions (zero-shot) on the example images", esc(value)])
    if lab.get("temperature") is not None:
        ece = lab.get("calibration_error") or {}
        note = (f" (calibration error {_pct(ece.get('before'))} → {_pct(ece.get('after'))} vs hidden labels)"
                if ece else "")
        quality.append(["confidence temperature, fitted on the examples", f"{lab['temperature']:.2f}{esc(note)}"])
    if quality:
        body += _table(["label quality", ""], quality)
    per_class = lab.get("spot_check_classes") or {}
    if per_class:  # where the overall estimate hides a class the labels mostly miss
        body += _table(["spot checks by class", "a person said", "auto-labels found", "auto-labeled as it", "of those right"],
                       [[esc(c), _num(r["checked"]), _ratio(r["agreed"], r["checked"]), _num(r["labeled"]),
                         _ratio(r["agreed"], r["labeled"])] for c, r in per_class.items()])
    return body


def _ratio(k: int, n: int) -> str:
    return f"{k} ({100 * k / n:.0f} %)" if n else DASH


def _synthetic_block(inputs: ReportInputs) -> str:
    """Generated, kept and rejected per class, and whether the kept samples helped on real images."""
    s = inputs.metrics.get("synthetic")
    if not s:
        return _na("No synthetic data: generation was off for this build.")
    esc = html.escape
    head = f"<p>generator <b>{esc(str(s.get('generator') or DASH))}</b>"
    head += f" ({esc(str(s['model']))})" if s.get("model") else ""
    head += f", mode {esc(str(s.get('mode', DASH)))}</p>"
    if s.get("unavailable"):
        return head + _na(f"Built without synthetic data: {s['unavailable']}")
    if not s.get("classes"):
        return head + _na(f"Nothing generated: {s.get('note') or 'no class needed it'}.")
    rows = []
    for name, c in (s.get("per_class") or {}).items():
        rejected = ", ".join(f"{k} {v}" for k, v in (c.get("rejected") or {}).items())
        rows.append([esc(name), _num(c.get("real")), _num(c.get("generated")), _num(c.get("kept")),
                     _pct(c.get("rejection_rate")), esc(c.get("unavailable") or rejected or DASH)])
    body = head + _table(["class", "real", "generated", "kept", "rejected by the gate", "reasons"], rows)
    over = f"; {_num(s['over_cap'])} more passed but were over the synthetic share cap" if s.get("over_cap") else ""
    body += (f"<p>{_num(s.get('kept'))} synthetic of {_num(s.get('generated'))} generated kept for training; "
             f"gate rejection rate <b>{_pct(s.get('rejection_rate'))}</b> (teacher disagreed, unsure, or "
             f"near-duplicate){over}.</p>")
    t, a = s.get("training") or {}, s.get("ablation") or {}
    if t:
        rows = [["validation (real images, auto-labels)", _pct(t.get("val_accuracy_with")),
                 _pct(t.get("val_accuracy_without"))]]
        if a:
            rows.append([esc(f"fp32 accuracy, {a.get('evaluated_on', '')}"), _pct(a.get("fp32_accuracy_with")),
                         _pct(a.get("fp32_accuracy_without"))])
            for name in a.get("recall_with") or {}:
                rows.append([esc(f"{name} recall"), _pct(a["recall_with"][name]), _pct(a["recall_without"].get(name))])
        body += _table(["same student, same seed", "with synthetic", "without"], rows)
        body += f"<p>Shipped: <b>{esc(str(t.get('shipped', DASH)))}</b> (the better on validation).</p>"
    samples = {k: v for k, v in inputs.synthetic_samples.items() if v}
    if samples:
        body += "<p class='muted'>Kept samples, with the teacher's confidence:</p>" + _samples_grid(samples, list(samples))
    return body


def _concepts_table(concepts: dict[str, list[tuple[str, float]]], labels: list[str]) -> str:
    if not any(concepts.values()):
        return _na("No concept mapping (the teacher did not map descriptions to ImageNet concepts).")
    names = labels + [k for k in concepts if k not in labels]
    rows = [[html.escape(n), html.escape(", ".join(f"{c} ({w:.2f})" for c, w in concepts.get(n, []))) or DASH]
            for n in names]
    return _table(["class", "ImageNet concepts (weight)"], rows)


# ---- plots -------------------------------------------------------------------------------

def _figure(width: float, height: float) -> "Figure":
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # Agg, without touching pyplot's global state
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=110, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _img(fig: "Figure", alt: str = "plot") -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight", pad_inches=0.1)  # keep titles and tick labels
    return _png_tag(buf.getvalue(), alt)


def _png_tag(png: bytes, alt: str, cls: str = "plot") -> str:
    data = base64.b64encode(png).decode("ascii")
    return f"<img class='{cls}' alt='{html.escape(alt)}' src='data:image/png;base64,{data}'>"


def _confusion_plots(inputs: ReportInputs) -> str:
    mats = [("int8 student", inputs.test_confusion), ("oracle int8 (true labels)", inputs.oracle_confusion)]
    mats = [(t, c) for t, c in mats if c is not None]
    if not mats:
        return _na("No test-set confusion matrix.")
    return _img(_confusion_fig(mats, inputs.label_names, "predicted"), "confusion matrix")


def _confusion_fig(mats: list[tuple[str, np.ndarray]], labels: list[str], xlabel: str) -> "Figure":
    k = len(labels)
    side = max(3.2, 0.55 * k + 1.6)
    fig = _figure(side * len(mats), side)
    for ax, (title, counts) in zip(fig.subplots(1, len(mats), squeeze=False)[0], mats):
        counts = np.asarray(counts, dtype=np.int64)
        rows = counts.sum(axis=1, keepdims=True)
        norm = np.divide(counts, rows, out=np.zeros(counts.shape), where=rows > 0)
        ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
        for i, j in np.ndindex(counts.shape):
            ax.text(j, i, str(counts[i, j]), ha="center", va="center", fontsize=8,
                    color="white" if norm[i, j] > 0.55 else "#223")
        ax.set_xticks(range(k), labels, rotation=45, ha="right", fontsize=8)
        ax.set_yticks(range(k), labels, fontsize=8)
        ax.set_xlabel(xlabel)
        ax.set_ylabel("true")
        ax.set_title(f"{title} — acc {np.trace(counts) / max(counts.sum(), 1):.1%}", fontsize=9)
    return fig


def _confidence_block(inputs: ReportInputs) -> str:
    conf = np.asarray(inputs.confidence, dtype=float).ravel()
    if conf.size == 0:
        return _na("No confidence scores recorded.")
    below = int((conf < inputs.min_confidence).sum())
    fig = _figure(6.5, 2.8)
    ax = fig.subplots()
    ax.hist(conf, bins=40, range=(0, 1), color="#4a78b5")
    ax.axvline(inputs.min_confidence, color="#c0392b", linestyle="--",
               label=f"threshold {inputs.min_confidence:.2f} ({below:,} of {conf.size:,} below)")
    ax.set_xlabel("teacher confidence")
    ax.set_ylabel("pool images")
    ax.legend(fontsize=8)
    return _img(fig, "confidence histogram")


def _history_fig(history: list[dict]) -> "Figure":
    epochs = [h.get("epoch", i) for i, h in enumerate(history)]
    fig = _figure(6.5, 2.8)
    ax = fig.subplots()
    ax.plot(epochs, [h.get("train_loss", np.nan) for h in history], color="#4a78b5", marker="o", ms=3)
    ax.set_xlabel("epoch")
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.set_ylabel("train loss", color="#4a78b5")
    ax2 = ax.twinx()
    ax2.plot(epochs, [h.get("val_accuracy", np.nan) for h in history], color="#d35400", marker="o", ms=3)
    ax2.set_ylabel("val accuracy", color="#d35400")
    return fig


def _timings_block(timings: dict[str, float]) -> str:
    stages = {k: v for k, v in timings.items() if k != "total" and v is not None}
    if not stages:
        return _na("No timings recorded.")
    total = timings.get("total", sum(stages.values()))
    fig = _figure(6.5, 0.35 * len(stages) + 1.0)
    ax = fig.subplots()
    names = list(stages)[::-1]  # first stage on top
    bars = ax.barh(names, [stages[n] for n in names], color="#4a78b5")
    ax.bar_label(bars, fmt="%.1f s", fontsize=8, padding=3)
    ax.margins(x=0.12)  # room for the labels
    ax.set_xlabel("seconds")
    ax.set_title(f"total {total:,.1f} s", fontsize=9)
    return _img(fig, "time per stage")


def _sample_png(image: np.ndarray) -> bytes:
    from PIL import Image

    a = np.asarray(image)
    a = a[..., 0] if a.ndim == 3 and a.shape[2] == 1 else a
    if a.dtype != np.uint8:
        a = np.clip(a, 0, 255).astype(np.uint8)
    img = Image.fromarray(a)
    scale = max(1, -(-SAMPLE_MIN_PX // max(img.size)))  # ceil division
    buf = io.BytesIO()
    img.resize((img.width * scale, img.height * scale), Image.NEAREST).save(buf, format="PNG")
    return buf.getvalue()


def _samples_grid(samples: dict[str, list[tuple[np.ndarray, float]]], labels: list[str]) -> str:
    if not any(samples.values()):
        return _na("No samples recorded.")
    rows = []
    for name in labels + [k for k in samples if k not in labels]:
        cells = "".join(f"<figure>{_png_tag(_sample_png(im), name, 'sample')}<figcaption>{c:.2f}</figcaption></figure>"
                        for im, c in samples.get(name, []))
        rows.append(f"<div class='samplerow'><div class='samplelabel'>{html.escape(name)}</div>"
                    f"<div class='samples'>{cells or _na('none')}</div></div>")
    return "".join(rows)


_CSS = """
body{font:14px/1.45 system-ui,-apple-system,'Segoe UI',sans-serif;color:#1d2330;background:#f4f6f9;margin:0}
main{max-width:1100px;margin:0 auto;padding:24px 32px 48px}h1{font-size:24px;margin:0 0 6px}
h2{font-size:17px;margin:0 0 10px;border-bottom:1px solid #e1e5ec;padding-bottom:4px}
section{background:#fff;border:1px solid #e1e5ec;border-radius:8px;padding:14px 18px;margin:16px 0}
.request{font-size:16px;margin:4px 0}.meta{color:#5a6476;margin:4px 0}.muted{color:#8a93a3}
.verdict{padding:8px 12px;border-radius:6px;margin:10px 0 0}.verdict.good{background:#e6f5ea;color:#1e6b34}
.verdict.bad{background:#fbe9e7;color:#a12a1c}.verdict.muted{background:#eef0f4}
table{border-collapse:collapse;font-variant-numeric:tabular-nums}
th,td{padding:4px 12px;border-bottom:1px solid #eef0f4;text-align:left;vertical-align:middle}
th{font-weight:600;color:#5a6476;font-size:12px;text-transform:uppercase;letter-spacing:.03em}
.bar{display:inline-block;width:160px;height:10px;background:#eef0f4;border-radius:5px;overflow:hidden;
vertical-align:middle;margin-right:8px}
.bar span{display:block;height:100%}.bar .ok{background:#3c9a5f}.bar .warn{background:#e0a526}.bar .over{background:#c0392b}
.barlabel{font-size:12px;color:#5a6476}.nowrap{white-space:nowrap}img.plot{max-width:100%;height:auto;display:block}
.samplerow{display:flex;align-items:flex-start;gap:12px;margin:6px 0}
.samplelabel{width:110px;flex:none;font-weight:600;padding-top:4px;overflow-wrap:anywhere}
.samples{display:flex;flex-wrap:wrap;gap:6px}figure{margin:0;text-align:center}
img.sample{image-rendering:pixelated;border:1px solid #e1e5ec;display:block}
figcaption{font-size:11px;color:#5a6476}code{background:#eef0f4;padding:1px 5px;border-radius:4px}
pre.code{background:#eef0f4;padding:10px 12px;border-radius:6px;font-size:12px;overflow-x:auto}
"""
