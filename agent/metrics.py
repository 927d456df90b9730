"""metrics.json: the one summary other code reads (the CLI table, the runs index, the app).

Required keys: teacher_label_accuracy, student_fp32_test_accuracy,
student_int8_test_accuracy, oracle_int8_test_accuracy, int8_fp32_top1_agreement,
weight_bytes, sram_estimate_bytes, macs, latency_estimate_ms, device, timings_s.
latency_floor_ms (with instructions_per_inference) is the C library's measured floor on the
device's core where verify emulates it (Cortex-M4, M7, M0+); None elsewhere. library_flash_bytes and
library_ram_bytes (with stack_bytes) are what the library takes there, measured: flash its code and
weights, RAM its arena and the most stack an inference used.
"""

from __future__ import annotations

from tools.sizing import budget_limits


def weakest_class(per_class: dict | None) -> dict | None:
    """The class with the lowest F1 among those in the evaluation set (name, recall, precision): an
    overall accuracy can hide one class the model mostly misses (the demo's shirts). None with fewer
    than two classes to compare."""
    rows = {name: r for name, r in (per_class or {}).items() if r.get("support")}
    if len(rows) < 2:
        return None
    name, r = min(rows.items(), key=lambda kv: kv[1]["f1"])
    return {"name": name, "recall": r["recall"], "precision": r["precision"]}


def weakest_class_text(per_class: dict | None) -> str:
    """``weakest_class`` as the summary tables show it: 'shirt: recall 11.1 %, precision 42.5 %'."""
    weak = weakest_class(per_class)
    if weak is None:
        return "—"
    return f"{weak['name']}: recall {100 * weak['recall']:.1f} %, precision {100 * weak['precision']:.1f} %"


WEAK_RECALL = 0.5  # a class the model finds less often than this on a test set: a person's labels are the lever


def review_hint(m: dict, run_id: str, on_page: bool = False) -> str | None:
    """One sentence pointing at what moved the labels most where the teacher alone falls short: a
    person answering the review queue (on the demo, 200 answers took the int8 student from 84.8 % to
    87.5 %, README). Given when the teacher hardly knows the classes by name, or when a test set shows a class
    the model mostly misses; None otherwise."""
    from knowledge.labeling import ZERO_SHOT_KNOWN

    lab = m.get("labeling") or {}
    why = []
    zs = lab.get("zero_shot_on_examples")
    if zs and zs["median_score"] < ZERO_SHOT_KNOWN:
        why.append("the teacher hardly knows these classes by name, so the labels rest on your examples")
    weak = weakest_class(m.get("per_class"))
    if weak and weak["recall"] < WEAK_RECALL and str(m.get("evaluated_on", "")).startswith("test"):
        why.append(f"the model finds only {100 * weak['recall']:.0f} % of the {weak['name']!r} test images")
    if not why:
        return None
    asked = lab.get("human_labels") or 0
    given = f" (you have given {asked})" if asked else ""
    if on_page:
        return (f"Next: answer the review queue under **Samples & review** (the pool images whose labels would help "
                f"most){given}, then **Retrain on my answers** there trains again on them: {' and '.join(why)}.")
    return (f"Next: `nanofactory review {run_id} --budget 100 --retrain` asks you about the pool images whose labels "
            f"would help most and trains again on your answers{given}: {' and '.join(why)}.")


def library_footprint(compiled: dict | None, device) -> dict | None:
    """What the C library takes on ``device``'s core where verify built it for that core and ran it
    emulated: flash (text + data: code and weights) and RAM (bss + data: the arena; plus the most
    stack an inference used, painted and read back). None for other cores or without the cross tools."""
    core = device.emulated_core or ""
    arm = ((compiled or {}).get("arm") or {}).get(core)
    emulated = ((compiled or {}).get("cortex_m") or {}).get(core)
    if not isinstance(arm, dict) or "text" not in arm or not isinstance(emulated, dict) or emulated.get("stack_bytes") is None:
        return None
    return {"flash_bytes": arm["text"] + arm["data"], "stack_bytes": emulated["stack_bytes"],
            "ram_bytes": arm["bss"] + arm["data"] + emulated["stack_bytes"]}


def library_rows(m: dict) -> list[tuple[str, str]]:
    """The summary tables' rows for what the C library takes on the device's core (metrics.json's
    library_flash_bytes, library_ram_bytes, stack_bytes); none where it was not measured."""
    if m.get("library_flash_bytes") is None or m.get("library_ram_bytes") is None:
        return []
    stack = m["stack_bytes"]
    flash = (f"{m['library_flash_bytes'] / 1024:.1f} KB of {m['flash_bytes_budget'] / 1024:.1f} KB "
             "(code and weights, built for the device's core)")
    ram = (f"{m['library_ram_bytes'] / 1024:.1f} KB of {m['sram_bytes_budget'] / 1024:.1f} KB (arena "
           f"{m['library_ram_bytes'] - stack:,} B + stack {stack:,} B, the most an inference used on the emulated core)")
    return [("flash, this C library", flash), ("RAM, this C library", ram)]


def assemble_metrics(ctx) -> dict:
    run, spec = ctx.run, ctx.run.spec
    data, teacher, label = run.result("data"), run.result("teacher"), run.result("label")
    quantize, evaluate = run.result("quantize"), run.result("evaluate")
    cost = quantize["cost"]
    flash, sram = budget_limits(ctx.device, spec.budgets.flash_bytes, spec.budgets.sram_bytes)
    latency_budget = spec.budgets.latency_ms
    stages = ("data", "teacher", "label", "search", "train", "quantize", "evaluate", "compile")
    timings = {s: run.result(s)["seconds"] for s in stages if run.is_done(s) and not run.result(s).get("skipped")}
    timings["total"] = round(sum(timings.values()), 2)
    student, oracle = evaluate["student_int8_test_accuracy"], evaluate["oracle_int8_test_accuracy"]
    step = ctx.student
    compiled = _compiled(run, cost)
    emulated = ((compiled or {}).get("cortex_m") or {}).get(ctx.device.emulated_core or "")
    instructions = emulated.get("instructions") if isinstance(emulated, dict) else None
    floor = ctx.device.latency_floor_ms(instructions) if instructions else None
    meets_latency = None if latency_budget is None else \
        cost["latency_ms"] <= latency_budget and (floor is None or floor <= latency_budget)
    library = library_footprint(compiled, ctx.device)
    return {
        "run_id": run.id,
        "device": spec.device,
        "evaluated_on": evaluate["evaluated_on"],
        "teacher": teacher["teacher"],
        "teacher_images_per_second": teacher["images_per_second"],
        "teacher_label_accuracy": label["teacher_label_accuracy"],
        "teacher_label_accuracy_kept": label.get("teacher_label_accuracy_kept"),
        "student_fp32_test_accuracy": evaluate["student_fp32_test_accuracy"],
        "student_int8_test_accuracy": student,
        "oracle_int8_test_accuracy": oracle,
        "student_oracle_ratio": student / oracle if oracle else None,
        "int8_fp32_top1_agreement": evaluate["int8_fp32_top1_agreement"],
        "onnx_max_abs_diff": quantize["student"]["onnx_max_abs_diff"],
        "params": cost["params"],
        "weight_bytes": cost["weight_bytes"],
        "macs": cost["macs"],
        "sram_estimate_bytes": cost["sram_bytes"],
        "latency_estimate_ms": cost["latency_ms"],
        "instructions_per_inference": instructions,  # the C library on the device's core, emulated (QEMU)
        "latency_floor_ms": floor,  # those instructions at the core's best rate: the C library cannot be faster
        "library_flash_bytes": library and library["flash_bytes"],  # code + weights, built for the device's core
        "library_ram_bytes": library and library["ram_bytes"],  # arena + the most stack an inference used
        "stack_bytes": library and library["stack_bytes"],
        "flash_bytes_budget": flash,
        "sram_bytes_budget": sram,
        "latency_budget_ms": latency_budget,
        "accuracy_floor": spec.budgets.accuracy_floor,
        "fits_flash": cost["weight_bytes"] <= flash and (library is None or library["flash_bytes"] <= flash),
        # measured where verify ran the library on the core; else the arena and the stack tools.cost predicts
        "fits_sram": (library["ram_bytes"] if library else cost["sram_bytes"] + (cost.get("stack_bytes") or 0)) <= sram,
        "meets_latency": meets_latency,
        "meets_accuracy_floor": None if spec.budgets.accuracy_floor is None else student >= spec.budgets.accuracy_floor,
        "per_class": evaluate["per_class"],
        "labeling": {
            "pool_size": data["pool_size"],
            "labeled_for_training": label["labeled_for_training"],
            "low_confidence": label["low_confidence"],
            "label_counts": label["label_counts"],
            "examples_per_class": data["examples_per_class"],
            "skipped_images": data["skipped_images"],
            "pool_source": data["pool_source"],
            **{k: label.get(k) for k in ("human_labels", "human_rejected", "duplicates_removed", "duplicate_groups",
                                         "capped", "hard_negatives_kept", "temperature", "calibration_error",
                                         "few_shot_only_accuracy", "spot_checks", "spot_check_classes")},
            "zero_shot_on_examples": teacher.get("zero_shot_on_examples"),
        },
        "student": {"arch": step.name, "width": step.stem_channels, "input": data["input"]},
        "compiled": compiled,
        "search": _search(run),
        "timings_s": timings,
    }


def _search(run) -> dict | None:
    """What the architecture search did: how many scored, what it chose, against the fixed student."""
    if not run.is_done("search") or run.result("search").get("skipped"):
        return None
    r = run.result("search")
    keys = ("space", "proxies", "scored", "rejected_over_budget", "seconds_scoring", "seconds_training", "chosen",
            "best", "best_cost", "best_val_accuracy", "fixed", "trained", "note")
    return {k: r.get(k) for k in keys}


def _compiled(run, cost: dict) -> dict | None:
    """The compile stage's figures: exact arena, bit-exactness, Cortex-M sizes, C accuracy."""
    if not run.is_done("compile"):
        return None
    c = run.result("compile")
    v = c["verify"]
    keys = ("samples", "runtime_samples", "c_vs_reference_bitexact", "tflm_vs_c_bitexact", "litert_vs_c_bitexact",
            "litert_optimized_vs_c_bitexact", "litert_optimized_vs_c_top1_agreement", "litert_optimized_vs_c_max_steps",
            "tflm_arena_head_bytes", "tflm_arena_total_bytes",
            "arena_ratio_vs_tflm_head", "c_int8_accuracy", "fp32_accuracy", "c_int8_vs_fp32_top1_agreement",
            "c_latency_us", "onnxruntime_int8_latency_us", "c_over_onnxruntime_latency",
            "onnxruntime_fused_vs_qdq_top1_agreement", "arm", "c_flags", "frames", "cortex_m")
    return {
        "dir": c["dir"],
        "arena_bytes": c["arena_bytes"],
        "sram_estimate_matches_arena": c["arena_bytes"] == cost["sram_bytes"],
        "weight_bytes": c["weight_bytes"],
        **{k: v.get(k) for k in keys},
    }


def _pct(v) -> str:
    return "—" if v is None else f"{100 * v:.1f} %"


def mean_f1(metrics: dict) -> float | None:
    """The F1 averaged over the model's outputs (``per_class``; those the test set has no image of left
    out): what accuracy on a test set mostly of one class hides. None when a class lacks it."""
    f1 = [c.get("f1") for c in (metrics.get("per_class") or {}).values() if c.get("support", 1)]
    return sum(f1) / len(f1) if f1 and None not in f1 else None


def comparison_rows(runs: list[tuple[str, dict]]) -> list[list[str]]:
    """Runs side by side (``nanofactory runs compare``): one row per figure, one column per run, each
    accuracy after the first with its change in points: what a review round, a larger budget or a
    search changed. Rows a run lacks show '—'."""
    first = runs[0][1]

    def share(get, name: str) -> list[str]:
        row = [name]
        for i, (_, m) in enumerate(runs):
            v, base = get(m), get(first)
            cell = _pct(v)
            if i and v is not None and base is not None:
                cell += f" ({100 * (v - base):+.1f})"
            row.append(cell)
        return row

    def plain(get, name: str) -> list[str]:
        return [name, *(str(get(m)) if get(m) is not None else "—" for _, m in runs)]

    rows = [
        ["run", *(run_id for run_id, _ in runs)],
        plain(lambda m: m.get("device"), "device"),
        plain(lambda m: (m.get("labeling") or {}).get("human_labels"), "a person's answers"),
        share(lambda m: m.get("teacher_label_accuracy"), "auto-label accuracy"),
        share(lambda m: m.get("student_int8_test_accuracy"), "student int8 accuracy"),
        share(mean_f1, "  mean F1 over the outputs"),
        share(lambda m: m.get("oracle_int8_test_accuracy"), "oracle int8 accuracy"),
    ]
    labels = list(dict.fromkeys(name for _, m in runs for name in (m.get("per_class") or {})))
    for name in labels:
        rows.append(share(lambda m, n=name: ((m.get("per_class") or {}).get(n) or {}).get("recall"), f"  {name} recall"))
        rows.append(share(lambda m, n=name: ((m.get("per_class") or {}).get(n) or {}).get("precision"),
                          f"  {name} precision"))
    rows += [
        plain(lambda m: (m.get("student") or {}).get("arch"), "student"),
        plain(lambda m: f"{m['weight_bytes'] / 1024:.1f} KB" if m.get("weight_bytes") else None, "weights (flash)"),
        plain(lambda m: f"{m['sram_estimate_bytes']:,} B" if m.get("sram_estimate_bytes") else None, "SRAM (arena)"),
        plain(lambda m: f"{m['macs']:,}" if m.get("macs") else None, "MACs"),
        plain(lambda m: f"{m['latency_estimate_ms']:.1f} ms" if m.get("latency_estimate_ms") else None, "latency estimate"),
        plain(lambda m: f"{m['latency_floor_ms']:.1f} ms" if m.get("latency_floor_ms") else None,
              "latency floor, C library"),
        plain(lambda m: f"{(m.get('timings_s') or {}).get('total', 0):.0f} s" if m.get("timings_s") else None, "build time"),
    ]
    return rows
