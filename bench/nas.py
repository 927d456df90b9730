"""The searched student against the fixed DS-CNN, trained the same full way on the same run's data.

Takes a finished build that ran the search stage (default: the newest run under ./runs, e.g.
after `make demo`), trains both architectures with the run's training config, seed and
auto-labels (distillation included), compiles each with the int8 compiler, and prints test
accuracy of the int8 build next to SRAM (the exact arena), flash, MACs and the latency estimate.

    .venv/bin/python bench/nas.py [--run runs/<id>] [--best-searched] [--seeds 3] [--train reverse_ce=0]

With ``--seeds N`` each architecture is trained N times (seeds run seed .. run seed + N - 1) and
the table shows the mean int8 test accuracy, its spread, and the difference per seed: two
students of the same size differ by a few tenths of a point from the seed alone.

With ``--oracle`` both train on the pool's true labels instead (cross-entropy, every pool image
but the validation split, as the build's oracle does): what each architecture can do when the
labels are not the limit.

With ``--widths 24 32`` the fixed DS-CNN is also trained at those widths (above the MAC cap the
build sizes it under): does a larger student help on these labels at all? ``--no-searched``
leaves the searched network out.

With ``--short`` each architecture is trained only the way the search's pick trains its
candidates (the run's search settings: a sample of the training images, a few epochs), and the
table shows what that pick sees (validation accuracy on the auto-labels) beside what it stands
for (accuracy on the validation images' hidden labels, and on the test set, fp32). Seconds per
architecture instead of minutes.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, help="a finished run folder with a search stage (default: newest in ./runs)")
    parser.add_argument("--best-searched", action="store_true",
                        help="when the search kept the fixed student, compare with its best searched candidate")
    parser.add_argument("--seeds", type=int, default=1, help="train each architecture this many times (default 1)")
    parser.add_argument("--oracle", action="store_true",
                        help="train on the pool's true labels (Fashion-MNIST's hidden labels) instead of the auto-labels")
    parser.add_argument("--widths", type=int, nargs="*", default=[],
                        help="also train the fixed DS-CNN at these widths (16 is the demo's; more MACs, more time)")
    parser.add_argument("--no-searched", action="store_true", help="leave the searched network out")
    parser.add_argument("--short", action="store_true",
                        help="train each architecture only the search's short way and show what its pick sees")
    parser.add_argument("--train", default="", help="TrainConfig overrides for both, key=value[,key=value], "
                        "e.g. reverse_ce=0 to train without the default reverse CE (which --oracle's true labels, as the "
                        "build's oracle, always leave out)")
    args = parser.parse_args()
    from labeler import overrides

    train_overrides = overrides(args.train)

    from agent.pipeline import open_run
    from agent.runs import RunStore
    from agent.stage_compile import calibration_inputs, evaluation_inputs
    from agent.stages import StageContext, _training_data
    from compilers.build import CompileConfig, compile_onnx, nchw_to_nhwc
    from compilers.onnx_export import export_onnx
    from compilers.reference import run_int8
    from tools.cost import estimate_cost
    from tools.spaces import config_from_dict
    from tools.student import ds_cnn
    from tools.train import train_student, true_label_config

    folder = args.run or max((p for p in Path("runs").glob("2*") if (p / "stages" / "search.json").is_file()),
                             key=lambda p: p.stat().st_mtime, default=None)
    if folder is None or not (folder / "stages" / "search.json").is_file():
        sys.exit("No finished run with a search stage: run `make demo` first or pass --run runs/<id>.")
    run = open_run(RunStore(folder.parent), folder.name)
    ctx = StageContext(run=run, show_bars=False)
    search = run.result("search")
    fixed = run.plan.step("train").student
    chosen = config_from_dict(search["best_config"])
    if search.get("chosen") == "fixed" and args.best_searched:
        best = max(search["trained"], key=lambda t: t["val_accuracy"])
        print(f"the search kept the fixed student; comparing with its best searched candidate {best['name']}")
        chosen = config_from_dict(best["config"])
    train_cfg = run.plan.step("train").train
    train_cfg = type(train_cfg)(**{**train_cfg.model_dump(), **train_overrides})
    inputs, x, y, soft, val, val_y = _training_data(ctx)
    if args.oracle:
        from agent.data import hidden_truth

        truth = hidden_truth(ctx.pool, run.spec)
        if truth is None or (truth < 0).any():
            sys.exit(f"Run {folder.name}'s pool has no hidden labels for every image; --oracle needs them (the demo's pool has).")
        train_idx = np.setdiff1d(np.arange(len(truth)), val)
        x, y, soft, val_y = inputs[train_idx], truth[train_idx], None, truth[val]
        train_cfg = true_label_config(train_cfg)  # as the build's oracle
    calib = calibration_inputs(ctx, 512)
    tx, ty = evaluation_inputs(ctx)
    print(f"run {folder.name}: {len(x)} training images ({'true labels' if args.oracle else 'auto-labels'}), evaluation on {len(ty)} images; "
          f"{train_cfg.epochs} epochs, seed {run.spec.seed}"
          + (f", reverse CE {train_cfg.reverse_ce:g}" if train_cfg.reverse_ce else ""))
    archs = [("fixed DS-CNN", fixed)] + ([] if args.no_searched else [("searched", chosen)])
    archs += [(f"DS-CNN w{w}", ds_cnn(w, fixed.input_size, fixed.in_channels, fixed.num_classes))
              for w in args.widths]
    if args.short:
        return short_training(ctx, archs, inputs, x, y, soft, val, val_y, tx, ty, train_cfg)
    seeds = [run.spec.seed + i for i in range(max(1, args.seeds))]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for label, config in archs:
            accs, vals = [], []
            cost = estimate_cost(config, ctx.device)
            for seed in seeds:
                result = train_student(config, x, y, soft, inputs[val], val_y, train_cfg, seed=seed,
                                       desc=label, progress=False)
                path = export_onnx(result.model, (config.in_channels, config.input_size, config.input_size),
                                   Path(tmp) / "student.onnx")
                compiled = compile_onnx(path, calib, Path(tmp) / "compiled", config=CompileConfig(backends=[]))
                g = compiled.graph
                q = g.tensors[g.input].quant.quantize(nchw_to_nhwc(tx))
                pred = np.concatenate([run_int8(g, q[i : i + 500]).reshape(-1, g.output_shape[-1]).argmax(1)
                                       for i in range(0, len(q), 500)])
                assert cost.sram_bytes == compiled.plan.arena_bytes
                accs.append(float((pred == ty).mean()))
                vals.append(result.history[-1]["val_accuracy"])
                print(f"  {label}, seed {seed}: int8 test {accs[-1]:.4f}", flush=True)
            rows.append((label, config.name, np.array(accs), float(np.mean(vals)), cost))
    spread = len(seeds) > 1
    print(f"\n{'':<14} {'int8 test':>9}{' (+-sd)' if spread else ''} {'val (fp32)':>10} {'SRAM':>9} {'flash':>9} "
          f"{'MACs':>9} {'latency':>8}  arch")
    for label, name, accs, val_acc, cost in rows:
        sd = f" +-{accs.std(ddof=1):.4f}" if spread else ""
        print(f"{label:<14} {accs.mean():>9.4f}{sd} {val_acc:>10.4f} {cost.sram_bytes / 1024:>6.1f} KB "
              f"{cost.weight_bytes / 1024:>6.1f} KB {cost.macs / 1e6:>7.2f} M {cost.latency_ms:>5.1f} ms  {name}")
    _, _, a_fixed, _, c_fixed = rows[0]
    print()
    for label, _, accs, _, cost in rows[1:]:
        diff = accs - a_fixed  # paired: the same seed for both
        per_seed = f" (per seed: {', '.join(f'{100 * d:+.1f}' for d in diff)})" if spread else ""
        print(f"{label} - fixed: {100 * diff.mean():+.1f} points int8 test accuracy{per_seed} at "
              f"{cost.sram_bytes / c_fixed.sram_bytes:.2f}x the SRAM")
    print(f"(search chose: {search.get('chosen')}; {search.get('scored')} scored in {search.get('seconds_scoring')} s)")


def short_training(ctx, archs, inputs, x, y, soft, val, val_y, tx, ty, train_cfg) -> None:
    """Each architecture trained as ``tools.search.pick_by_training`` trains the search's candidates."""
    import torch

    from agent.data import hidden_truth
    from tools.cost import estimate_cost
    from tools.train import predict, to_input, train_student

    run = ctx.run
    cfg = run.plan.step("search").search
    truth = hidden_truth(ctx.pool, run.spec)
    val_truth = None if truth is None or (truth[val] < 0).any() else truth[val]
    take = np.random.default_rng(run.spec.seed).choice(len(x), min(len(x), cfg.train_samples), replace=False)
    short = train_cfg.model_copy(update={"epochs": cfg.train_epochs})
    xv, xt = to_input(inputs[val]), torch.from_numpy(np.asarray(tx, np.float32))
    print(f"short training as the search's pick does: {len(take)} images, {cfg.train_epochs} epochs, seed {run.spec.seed}")
    print(f"\n{'':<14} {'val (labels)':>12} {'val (hidden)':>12} {'test fp32':>9} {'MACs':>8}  arch")
    for label, config in archs:
        trained = train_student(config, x[take], y[take], None if soft is None else soft[take], inputs[val], val_y,
                                short, seed=run.spec.seed, progress=False)
        pv, pt = predict(trained.model, xv), predict(trained.model, xt)
        hidden = f"{(pv == val_truth).mean():>12.4f}" if val_truth is not None else f"{'-':>12}"
        print(f"{label:<14} {(pv == val_y).mean():>12.4f} {hidden} {(pt == ty).mean():>9.4f} "
              f"{estimate_cost(config, ctx.device).macs / 1e6:>6.2f} M  {config.name}", flush=True)


if __name__ == "__main__":
    main()
