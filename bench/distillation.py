"""Distillation ablation at equal budget: cross-entropy only vs KD vs KD + feature distillation
vs KD + reverse cross-entropy.

    .venv/bin/python bench/distillation.py [--run RUN_DIR] [--epochs 8] [--feature-weight 0.5]
        [--reverse-ce 3] [--losses ce kd features rce] [--seeds 1]

The demo's task: the run's auto-labeled Fashion-MNIST pool (builds the demo to its label stage
when --run is not given; the teacher's embeddings come from the cache when present), the same
student, seed, epochs and data for every row. Only the loss changes:

  CE only            cross-entropy on the teacher's hard labels
  KD                 alpha * T^2 * KL(teacher_T || student_T) + (1 - alpha) * CE
  KD + features      KD plus a cosine hint from the student's pooled features (through an adapter)
                     to the teacher's projected embedding (tools.train, --feature-distill)
  KD + reverse CE    the build's default: KD with symmetric cross-entropy on the hard labels, CE
                     plus the reverse CE, a bounded term, so wrong labels pull less (tools.train,
                     --reverse-ce); the other rows leave it out

Prints fp32 and int8 (onnxruntime static QDQ, per-channel) accuracy on the 10,000 Fashion-MNIST
test images, and the training time; with --seeds N, each loss trains with N seeds (the run's seed
and the next ones) and a last table gives the means, their standard deviation, and the mean
difference from KD over the paired seeds.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from pathlib import Path

import numpy as np


LOSSES = ("ce", "kd", "features", "rce")


def labeled_run(runs_root: Path):
    from agent.data import load_pool, native_shape
    from agent.demo import demo_spec
    from agent.pipeline import create_run, execute
    from agent.plan import GenerateStep, default_input, offline_plan
    from agent.runs import RunStore

    store = RunStore(runs_root / "runs")
    spec = demo_spec(runs_root)
    plan = offline_plan(spec, default_input(spec, *native_shape(load_pool(spec))), generate=GenerateStep(mode="off"))
    run = create_run(spec, plan, store)
    execute(run, store, None, show_bars=False, until="label")
    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, help="a demo run folder whose label stage is done")
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--feature-weight", type=float, default=0.5)
    parser.add_argument("--reverse-ce", type=float, default=3.0, help="weight of the reverse CE row (default 3, the build's)")
    parser.add_argument("--losses", nargs="+", choices=list(LOSSES), default=list(LOSSES),
                        help="which rows to train (default all)")
    parser.add_argument("--seeds", type=int, default=1, help="training seeds per loss (default 1)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    from agent.pipeline import open_run
    from agent.runs import RunStore
    from agent.stage_compile import calibration_inputs, evaluation_inputs
    from agent.stages import StageContext, _training_data, feature_targets
    from compilers.onnx_export import export_onnx, run_onnx
    from tools.quantize import quantize_int8

    run = open_run(RunStore(args.run.parent), args.run.name) if args.run else \
        labeled_run(Path(tempfile.mkdtemp(prefix="distill-")))
    ctx = StageContext(run=run, show_bars=False)
    inputs, x, y, soft, val, val_y = _training_data(ctx)
    feats = feature_targets(ctx)
    xt, truth = evaluation_inputs(ctx)
    calib = calibration_inputs(ctx, run.plan.step("quantize").quantize.calibration_samples)
    base = run.plan.step("train").train.model_copy(update={"epochs": args.epochs, "reverse_ce": 0.0})
    rows = {"ce": ("CE only", None, base, None),  # no soft targets: plain cross-entropy
            "kd": ("KD", soft, base, None),
            "features": (f"KD + features ({args.feature_weight:g})", soft,
                         base.model_copy(update={"feature_weight": args.feature_weight}), feats),
            "rce": (f"KD + reverse CE ({args.reverse_ce:g})", soft,
                    base.model_copy(update={"reverse_ce": args.reverse_ce}), None)}
    seeds = [run.spec.seed + i for i in range(args.seeds)]
    print(f"run {run.id}: {len(x):,} training images ({len(val):,} validation), student {ctx.student.name}, "
          f"{args.epochs} epochs, seed {', '.join(map(str, seeds))}; test: {len(truth):,} Fashion-MNIST test images",
          flush=True)
    print(f"{'loss':<24} {'seed':>4} {'fp32 test':>10} {'int8 test':>10} {'val (auto)':>11} {'train s':>8}")
    from tools.train import train_student

    results: dict[str, list[tuple[float, float]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for key, seed in ((k, s) for k in args.losses for s in seeds):
            name, targets, config, features = rows[key]
            started = time.perf_counter()
            result = train_student(ctx.student, x, y, targets, inputs[val], val_y, config, seed=seed,
                                   progress=False, feature_targets=features)
            seconds = time.perf_counter() - started
            shape = (ctx.student.in_channels, ctx.student.input_size, ctx.student.input_size)
            fp32 = export_onnx(result.model, shape, Path(tmp) / "m.onnx")
            int8 = quantize_int8(fp32, Path(tmp) / "m8.onnx", calib, run.plan.step("quantize").quantize)
            acc32 = float((run_onnx(fp32, xt).argmax(1) == truth).mean())
            acc8 = float((run_onnx(int8, xt).argmax(1) == truth).mean())
            results.setdefault(key, []).append((acc32, acc8))
            print(f"{name:<24} {seed:>4} {acc32:>10.4f} {acc8:>10.4f} {result.history[-1]['val_accuracy']:>11.4f} "
                  f"{seconds:>8.0f}", flush=True)
    if args.seeds > 1:
        print(f"\n{'loss':<24} {'fp32 mean':>10} {'+-sd':>7} {'int8 mean':>10} {'+-sd':>7} {'int8 - KD':>10}")
        for key, accs in results.items():
            a = np.array(accs)
            paired = (f"{100 * (a[:, 1] - np.array(results['kd'])[:, 1]).mean():+9.2f}p"
                      if "kd" in results and key != "kd" else f"{'-':>10}")
            print(f"{rows[key][0]:<24} {a[:, 0].mean():>10.4f} {a[:, 0].std(ddof=1):>7.4f} {a[:, 1].mean():>10.4f} "
                  f"{a[:, 1].std(ddof=1):>7.4f} {paired}")


if __name__ == "__main__":
    main()
