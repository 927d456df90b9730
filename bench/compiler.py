"""The int8 compiler on the MLPerf Tiny reference models and the run's student.

    .venv/bin/python bench/compiler.py [--run RUNS/ID] [--samples 100] [--out FILE] [--workdir DIR]

For ResNet-8 (CIFAR-10), DS-CNN (KWS), MobileNetV1-0.25 (VWW) with seeded random weights
(bench/mlperf_models.py), and the student (a run folder's model.onnx, or the demo-sized
``ds_cnn(16, 28, 1, 5)`` with random weights): export fp32 ONNX (BatchNorm folded), quantize it
with onnxruntime (the host latency baseline), compile it on random calibration inputs and
verify the artifacts on ``--samples`` inputs (compilers.verify, no sanitizers: the tests run those).

Prints three tables: correctness and memory (bit-exact C vs numpy reference / TFLite Micro /
LiteRT reference kernels, arena against TFLM's planned tensors, Cortex-M4 text/bss and the stack an
inference used on the emulated M4), host latency (C vs onnxruntime int8, one thread; and the same
model with int8 rather than uint8 tensors, which onnxruntime runs faster on some x86 hosts and
saturates on those without VNNI) and the MCU latency estimate MACs / (MAC/cycle x clock) with the
catalog's Cortex-M4 and M7 throughput next to the published MLPerf Tiny v1.x latencies; and, with
qemu-system-arm, the instructions one inference executes on the emulated M4 and M7 (the DSP loops
and the portable ones) and M0+, and the latency floor they set. All figures go to ``--out`` as JSON.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
import traceback
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from the repository root

from bench.mlperf_models import MODELS, create_model, randomize_batchnorm
from knowledge.devices import get_device
from knowledge.io import write_json_atomic

log = logging.getLogger("bench.compiler")

# MLPerf Tiny v1.x closed division, ms per inference (low, high): Cortex-M4 @120 MHz (STM32L4R5)
# and Cortex-M7 @216 MHz (STM32F746); the catalog's MAC/cycle figures were derived from these
PUBLISHED_MS = {
    "resnet8": {"m4": (170, 230), "m7": (65, 65)},
    "ds_cnn": {"m4": (72, 75), "m7": (19, 19)},
    "mobilenet_v1_025": {"m4": (209, 231), "m7": (57, 57)},
}
CORES = {"m4": ("STM32L4R5", 120), "m7": ("STM32F746NG", 216)}  # catalog entry, clock in MHz
CALIBRATION_SAMPLES = 64


def random_inputs(shape: tuple[int, ...], n: int, seed: int) -> np.ndarray:
    """Uniform [-1, 1) float NCHW: the range of tools.train.to_input, so the int8 input scale is realistic."""
    return np.random.default_rng(seed).uniform(-1, 1, (n, *shape)).astype(np.float32)


def export_pair(model, input_shape, calib: np.ndarray, folder: Path) -> tuple[Path, Path]:
    from compilers.onnx_export import export_onnx
    from tools.quantize import QuantizeConfig, quantize_int8

    fp32 = export_onnx(model, input_shape, folder / "model.onnx")
    int8 = quantize_int8(fp32, folder / "model_int8.onnx", calib, QuantizeConfig(calibration_samples=len(calib)))
    return fp32, int8


def mlperf_case(name: str, folder: Path, samples: int, seed: int) -> dict:
    input_shape = MODELS[name][1]
    calib = random_inputs(input_shape, CALIBRATION_SAMPLES, seed)
    fp32, int8 = export_pair(create_model(name, seed), input_shape, calib, folder)
    return {"name": name, "source": "MLPerf Tiny reference architecture, random weights", "fp32": fp32,
            "int8": int8, "calib": calib, "test": random_inputs(input_shape, samples, seed + 1)}


def student_case(run: Path | None, folder: Path, samples: int, seed: int) -> dict:
    if run is not None:
        from tools.train import to_input

        for f in ("model.onnx", "model_int8.onnx", "data/pool_inputs.npy"):
            if not (run / f).is_file():
                raise SystemExit(f"{run} has no {f}; pass a run folder that finished its quantize stage.")
        pool = np.load(run / "data" / "pool_inputs.npy", mmap_mode="r")
        order = np.random.default_rng(seed).permutation(len(pool))
        calib = to_input(pool[np.sort(order[:CALIBRATION_SAMPLES])]).numpy()
        test = to_input(pool[np.sort(order[-samples:])]).numpy()  # overlaps calib only for pools < 64 + samples
        return {"name": "student", "source": f"run {run}: its model.onnx / model_int8.onnx, pool inputs",
                "fp32": run / "model.onnx", "int8": run / "model_int8.onnx", "calib": calib, "test": test}
    import torch

    from tools.student import build_student, ds_cnn

    config = ds_cnn(16, 28, 1, 5)
    torch.manual_seed(seed)
    model = build_student(config)
    randomize_batchnorm(model, seed)
    input_shape = (config.in_channels, config.input_size, config.input_size)
    calib = random_inputs(input_shape, CALIBRATION_SAMPLES, seed)
    fp32, int8 = export_pair(model.eval(), input_shape, calib, folder)
    return {"name": "student", "source": f"demo student {config.name} (ds_cnn(16, 28, 1, 5)), random weights",
            "fp32": fp32, "int8": int8, "calib": calib, "test": random_inputs(input_shape, samples, seed + 1)}


def mcu_estimates(name: str, macs: int) -> dict:
    out = {}
    for core, (device_name, mhz) in CORES.items():
        mac_per_cycle = get_device(device_name).macs_per_cycle
        est = macs / (mac_per_cycle * mhz * 1e6) * 1e3
        out[core] = {"device": device_name, "clock_mhz": mhz, "macs_per_cycle": mac_per_cycle, "estimate_ms": est}
        if name in PUBLISHED_MS:
            low, high = PUBLISHED_MS[name][core]
            out[core].update(published_ms=[low, high], rel_error_vs_mid=est / ((low + high) / 2) - 1)
    return out


def bench_case(case: dict, folder: Path) -> dict:
    from compilers.build import compile_onnx
    from compilers.verify import verify

    t0 = time.perf_counter()
    compiled = compile_onnx(case["fp32"], case["calib"], folder / "compiled", case["name"])
    t1 = time.perf_counter()
    report = verify(compiled, case["test"], int8_onnx=case["int8"], sanitize=False)
    verify_s = time.perf_counter() - t1
    summary = compiled.summary
    return {"name": case["name"], "source": case["source"], "macs": summary["macs"], "params": summary["params"],
            "weight_bytes": summary["weight_bytes"], "ops": summary["ops"], "compile_s": t1 - t0,
            "verify_s": verify_s, "verify": report, "mcu": mcu_estimates(case["name"], summary["macs"]),
            "portable_instructions": portable_instructions(compiled, case["test"][:4], report),
            "onnxruntime_s8": onnxruntime_s8(case["int8"], case["test"], folder)}


def onnxruntime_s8(int8: Path, x: np.ndarray, folder: Path, rounds: int = 7) -> dict:
    """The int8 model with int8 activations and weights (what quantize_int8 wrote before it offset
    them into uint8) in onnxruntime's fused kernels: its time beside the uint8 model's, in turns,
    and how often its top-1 matches the QDQ arithmetic (below 100 % where u8 x s8 products saturate)."""
    import onnx
    from onnx import TensorProto, numpy_helper

    from compilers.onnx_export import run_onnx
    from compilers.verify import ort_timer

    model = onnx.load(str(int8))
    for init in model.graph.initializer:
        if init.data_type == TensorProto.UINT8:
            shifted = (numpy_helper.to_array(init).astype(np.int16) - 128).astype(np.int8)
            init.CopyFrom(numpy_helper.from_array(shifted, init.name))
    s8 = folder / "model_int8_s8.onnx"
    onnx.save(model, str(s8))
    time_u8, time_s8 = ort_timer(int8, x), ort_timer(s8, x)
    u8_us, s8_us = [], []
    for _ in range(rounds):
        u8_us.append(time_u8())
        s8_us.append(time_s8())
    agree = (run_onnx(s8, x, fused=True).argmax(1) == run_onnx(int8, x).argmax(1)).mean()
    return {"u8_us": float(np.median(u8_us)), "s8_us": float(np.median(s8_us)),
            "s8_fused_vs_qdq_top1_agreement": float(agree)}


def portable_instructions(compiled, x: np.ndarray, report: dict) -> dict:
    """Instructions per inference on each emulated core with the portable loops (NF_NO_DSP), where
    verify ran the library (with the DSP loops) on the cores."""
    from compilers.build import nchw_to_nhwc
    from compilers.verify import emulate_cortex_m

    emulated = report.get("cortex_m") or {}
    xq = compiled.graph.tensors[compiled.graph.input].quant.quantize(nchw_to_nhwc(x))
    size = compiled.graph.tensors[compiled.graph.output].size
    return {core: int(np.median(emulate_cortex_m(compiled.dir / "c", xq, size, core, defines=("NF_NO_DSP",)).instructions))
            for core, v in emulated.items() if isinstance(v, dict)}


def pct(x) -> str:
    return "-" if x is None else f"{100 * x:.0f}%"


def published(pub) -> str:
    """An MLPerf Tiny latency (low, high) as printed: one figure, a range, or '-'."""
    return "-" if pub is None else f"{pub[0]}" if pub[0] == pub[1] else f"{pub[0]}-{pub[1]}"


def render(rows: list[dict]) -> str:
    def table(title, header, body):
        widths = [max(len(str(r[i])) for r in [header, *body]) for i in range(len(header))]
        lines = [title, "  ".join(h.rjust(w) for h, w in zip(header, widths))]
        lines += ["  ".join(str(c).rjust(w) for c, w in zip(r, widths)) for r in body]
        return "\n".join(lines)

    ok = [r for r in rows if "error" not in r]
    correct = []
    for r in ok:
        v, m4 = r["verify"], r["verify"].get("arm", {}).get("cortex-m4", {})
        correct.append([r["name"], f"{r['macs'] / 1e6:.2f}M", f"{r['params'] / 1e3:.1f}k",
                        pct(v.get("c_vs_reference_bitexact")), pct(v.get("tflm_vs_c_bitexact")),
                        pct(v.get("litert_vs_c_bitexact")), v["arena_bytes"], v.get("tflm_arena_head_bytes", "-"),
                        v.get("tflm_arena_total_bytes", "-"), f"{v.get('arena_ratio_vs_tflm_head', float('nan')):.2f}",
                        m4.get("text", "-"), m4.get("bss", "-"),
                        ((v.get("cortex_m") or {}).get("cortex-m4") or {}).get("stack_bytes", "-")])
    host = [[r["name"], f"{r['verify']['c_latency_us']:.0f}",
             f"{r['verify'].get('onnxruntime_int8_latency_us', float('nan')):.0f}",
             f"{r['verify'].get('c_over_onnxruntime_latency', float('nan')):.2f}",
             f"{r['onnxruntime_s8']['s8_us'] / r['onnxruntime_s8']['u8_us']:.2f}",
             pct(r["onnxruntime_s8"]["s8_fused_vs_qdq_top1_agreement"]),
             f"{r['compile_s']:.1f}", f"{r['verify_s']:.1f}"] for r in ok]
    mcu = []
    for r in ok:
        cells = [r["name"]]
        for core in CORES:
            e = r["mcu"][core]
            pub = e.get("published_ms")
            cells += [f"{e['estimate_ms']:.1f}", published(pub),
                      "-" if pub is None else f"{100 * e['rel_error_vs_mid']:+.0f}%"]
        mcu.append(cells)
    chip = []
    for r in ok:
        emulated = r["verify"].get("cortex_m") or {}
        if not all(isinstance(emulated.get(f"cortex-{core}"), dict) for core in CORES):
            continue
        cells = [r["name"]]
        for core, (device, _) in CORES.items():
            dsp, portable = emulated[f"cortex-{core}"]["instructions"], r["portable_instructions"][f"cortex-{core}"]
            cells += [f"{dsp / 1e6:.2f}M", f"{portable / 1e6:.2f}M", f"{get_device(device).latency_floor_ms(dsp):.1f}",
                      published(PUBLISHED_MS.get(r["name"], {}).get(core))]
        m0 = (emulated.get("cortex-m0plus") or {}).get("instructions")
        cells += [f"{m0 / 1e6:.2f}M", f"{get_device('RP2040').latency_floor_ms(m0):.1f}"] if m0 else ["-", "-"]
        chip.append(cells)
    m4, m7 = (f"{get_device(d).macs_per_cycle:.2f} MAC/cyc @{mhz} MHz" for d, mhz in CORES.values())
    parts = [
        table("Correctness and memory (bit-exact: share of inputs with identical int8 outputs; arena in bytes; "
              "M4 stack: the most an inference used on the emulated core)",
              ["model", "MACs", "params", "C=numpy", "C=TFLM", "C=LiteRT", "arena", "TFLM head", "TFLM total",
               "ours/head", "M4 text", "M4 bss", "M4 stack"], correct),
        table("Host latency, one thread (us per inference: CPU time, median of interleaved rounds; C built with "
              f"{ok[0]['verify'].get('c_latency_flags', '?') if ok else '?'}; ORT int8: model_int8.onnx, uint8; "
              "s8/u8: the same model with int8 activations and weights, its time over the uint8 one's, and its "
              "top-1 agreement with the QDQ arithmetic in onnxruntime's fused kernels); "
              "compile and verify wall time (s)",
              ["model", "C", "ORT int8", "C/ORT", "s8/u8", "s8 top-1", "compile s", "verify s"], host),
        table(f"MCU latency estimate (ms) vs MLPerf Tiny v1.x published; M4: {m4}, M7: {m7}",
              ["model", "M4 est", "M4 pub", "M4 err", "M7 est", "M7 pub", "M7 err"], mcu),
    ]
    if chip:
        parts.append(table("This C library on emulated cores (QEMU -icount): instructions per inference with the DSP "
                           "loops (nf_dsp.h) and the portable ones, and the floor they set (ms: one instruction per "
                           "cycle on the M4 @120 MHz, two on the M7 @216 MHz) beside MLPerf Tiny's published ms; "
                           "the ARMv6-M build (portable loops) and its floor on an RP2040's M0+ @133 MHz",
                           ["model", "M4 DSP", "M4 portable", "M4 floor", "M4 pub",
                            "M7 DSP", "M7 portable", "M7 floor", "M7 pub", "M0+", "M0+ floor"], chip))
    parts += [f"FAILED {r['name']}: {r['error']}" for r in rows if "error" in r]
    return "\n\n".join(parts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, help="run folder whose student to compile (model.onnx, model_int8.onnx, "
                                                 "data/pool_inputs.npy); default: the demo student, random weights")
    parser.add_argument("--samples", type=int, default=100, help="test inputs per model (default 100)")
    parser.add_argument("--models", nargs="+", default=[*MODELS, "student"], choices=[*MODELS, "student"],
                        help="which models to run (default: all)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path(tempfile.gettempdir()) / "nanofactory-bench-compiler.json",
                        help="JSON with every figure (default: %(default)s)")
    parser.add_argument("--workdir", type=Path, help="keep ONNX files and compiled folders here (default: a temp dir)")
    args = parser.parse_args()
    if args.samples < 1:
        parser.error("--samples must be at least 1")
    if args.run is not None and not args.run.is_dir():
        parser.error(f"--run {args.run} is not a folder; pass a run folder such as runs/20261121-144112-circle")
    # progress from this script only: the ONNX exporter's optimizer logs every pass at INFO
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    log.setLevel(logging.INFO)

    with tempfile.TemporaryDirectory(prefix="bench-compiler-") as tmp:
        work = args.workdir or Path(tmp)
        rows = []
        for name in args.models:
            folder = work / name
            start = time.perf_counter()
            log.info("%s: export, quantize, compile, verify on %d inputs ...", name, args.samples)
            try:
                case = (student_case(args.run, folder, args.samples, args.seed) if name == "student"
                        else mlperf_case(name, folder, args.samples, args.seed))
                rows.append(bench_case(case, folder))
                v = rows[-1]["verify"]
                log.info("%s: done in %.0f s (%.2f M MACs, C=TFLM %s)", name, time.perf_counter() - start,
                         rows[-1]["macs"] / 1e6, pct(v.get("tflm_vs_c_bitexact")))
            except Exception as exc:  # noqa: BLE001 - one model's failure is reported, the others still run
                error = f"{type(exc).__name__}: {exc}"
                rows.append({"name": name, "error": error, "traceback": traceback.format_exc()})
                log.error("%s: FAILED after %.0f s: %s", name, time.perf_counter() - start, error)
    student = next((r for r in rows if r["name"] == "student" and "source" in r), None)
    print(f"\nstudent: {student['source'] if student else 'not run'}\n")
    print(render(rows))
    write_json_atomic(args.out, {"samples": args.samples, "seed": args.seed, "models": rows})
    print(f"\nfigures: {args.out}")


if __name__ == "__main__":
    main()
