"""How few human labels does the student need? Measured on the demo task.

    .venv/bin/python bench/labels_needed.py [--pool 60000] [--shots 1 5 20] [--budgets 50 200 500] \
        [--seed N] [--set key=value[,key=value]] [--train key=value[,key=value]]

The demo's smart-closet task (shirt, trouser, sneaker, bag, other) on the 60,000 Fashion-MNIST
train images used unlabeled, tested on the 10,000 test images. Every row is a full build to the
evaluate stage (teacher labels, KD training, int8 PTQ/QAT gate) and reports the int8 student's
test accuracy against the fully-labeled student: the same architecture trained on the true
labels of the same pool, in the same run; beside it the student's mean F1 over its outputs and
its weakest class's recall, which accuracy on a pool mostly of "other" can hide.

  k shots        k example images per named class (k x 4 human labels), nothing else
  active N       the 5-shot run, then rounds of active learning (agent.review's queue:
                 uncertain x diverse) answered by the hidden labels (the oracle stands in for
                 a person) until N labels were given, retraining after each round as
                 `nanofactory review --retrain` does (the new run records its parent); within
                 a round the queue is re-ranked every --refresh answers, as `nanofactory
                 review` does (0: ranked once per round, from the run's labels)

Writes bench/out/labels_needed.json and .png (labels_needed-seedN.* for --seed N > 0 and
labels_needed[-seedN]-set.* with --set, -train with --train, -refreshN with another --refresh, so
none replaces the README's plot; --name NAME: bench/out/NAME.* instead); prints a table.
About 16 minutes on 2 cores once the teacher's embeddings are cached (the first build adds ~3; 12 with --shots 5).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
from pathlib import Path

OUT = Path(__file__).parent / "out"
ROW_KEYS = ("run_id", "int8", "teacher_label_accuracy", "mean_f1", "weakest_class", "weakest_recall", "seconds")


def _step(plan, kind: str, **updates):
    steps = [s.model_copy(update=updates) if s.kind == kind else s for s in plan.steps]
    return plan.model_copy(update={"steps": steps})


def build(spec, store, oracle: bool, parent=None, quiet: bool = True, label: dict | None = None,
          train: dict | None = None) -> dict:
    """One build to the evaluate stage; with ``parent``, on its human labels; ``label`` overrides
    LabelConfig, ``train`` TrainConfig."""
    import shutil

    from agent.data import load_pool, native_shape
    from agent.metrics import mean_f1
    from agent.pipeline import create_run, execute
    from agent.plan import GenerateStep, default_input, offline_plan
    from agent.review import HUMAN_LABELS

    plan = offline_plan(spec, default_input(spec, *native_shape(load_pool(spec))), generate=GenerateStep(mode="off"))
    plan = _step(plan, "train", oracle=oracle)
    if train:
        config = plan.step("train").train
        plan = _step(plan, "train", train=type(config)(**{**config.model_dump(), **train}))
    if label:
        config = plan.step("label").label
        plan = _step(plan, "label", label=type(config)(**{**config.model_dump(), **label}))
    decisions = {"planner": "offline", "changes": [], "parent": parent.id} if parent is not None else None
    run = create_run(spec, plan, store, decisions)
    if parent is not None:
        (run.dir / "data").mkdir(parents=True, exist_ok=True)
        shutil.copyfile(parent.dir / HUMAN_LABELS, run.dir / HUMAN_LABELS)
    started = time.perf_counter()
    execute(run, store, None, show_bars=not quiet, until="evaluate")
    ev, label = run.result("evaluate"), run.result("label")
    per_class = ev["per_class"]  # the int8 student's test precision / recall / F1 per output
    weakest = min(per_class, key=lambda c: per_class[c]["recall"])
    return {"run": run, "run_id": run.id, "int8": ev["student_int8_test_accuracy"],
            "mean_f1": mean_f1(ev),
            "weakest_class": weakest, "weakest_recall": per_class[weakest]["recall"],
            "oracle_int8": ev["oracle_int8_test_accuracy"], "teacher_label_accuracy": label["teacher_label_accuracy"],
            "human_labels": label.get("human_labels", 0), "seconds": round(time.perf_counter() - started, 1)}


def main() -> None:
    from agent.review import REFRESH_EVERY

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pool", type=int, default=60000, help="Fashion-MNIST train images in the pool")
    parser.add_argument("--shots", type=int, nargs="+", default=[1, 5, 20], help="example images per named class")
    parser.add_argument("--name", default=None, help="write bench/out/NAME.json and .png (a measurement of its own)")
    parser.add_argument("--budgets", type=int, nargs="+", default=[50, 200, 500], help="active-learning label budgets")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--refresh", type=int, default=REFRESH_EVERY,
                        help="answers between re-rankings of the review queue (0: once per round)")
    parser.add_argument("--runs", type=Path, help="keep the runs here (default: a temporary folder)")
    parser.add_argument("--set", dest="label", default="",
                        help="LabelConfig overrides for every build, key=value[,key=value] (as bench/labeler.py)")
    parser.add_argument("--train", default="", help="TrainConfig overrides for every build, key=value[,key=value], "
                        "e.g. reverse_ce=0 to train without the default reverse CE (which the fully-labeled student, on "
                        "true labels, always leaves out)")
    args = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).parent))
    from labeler import overrides

    label, train = overrides(args.label), overrides(args.train)
    logging.basicConfig(level=logging.WARNING)

    from agent.demo import demo_spec
    from agent.review import oracle_review
    from agent.runs import RunStore

    root = Path(args.runs or tempfile.mkdtemp(prefix="labels-needed-"))
    store = RunStore(root / "runs")
    rows, full = [], None
    base = None
    for k in sorted(args.shots):
        spec = demo_spec(root / f"shots-{k}", pool_limit=args.pool, seed=args.seed, examples_per_class=k)
        r = build(spec, store, oracle=full is None, label=label, train=train)
        full = full if full is not None else r["oracle_int8"]
        named = len(spec.classes)
        rows.append({"setting": f"{k} shots", "human_labels": k * named, **{x: r[x] for x in ROW_KEYS}})
        print(f"{rows[-1]['setting']:>12}: int8 {r['int8']:.4f}, labels {r['teacher_label_accuracy']:.4f} "
              f"({r['seconds']} s)", flush=True)
        if k == 5:
            base = (r["run"], spec)
    if base is not None:
        run, spec = base
        given = 0
        for budget in sorted(args.budgets):
            oracle_review(run.dir, budget - given, seed=args.seed, refresh=args.refresh)
            given = budget
            r = build(spec, store, oracle=False, parent=run, label=label, train=train)
            run = r["run"]
            rows.append({"setting": f"active {budget}", "human_labels": 5 * len(spec.classes) + budget,
                         **{x: r[x] for x in ROW_KEYS}})
            print(f"{rows[-1]['setting']:>12}: int8 {r['int8']:.4f}, labels {r['teacher_label_accuracy']:.4f} "
                  f"({r['seconds']} s)", flush=True)
    for row in rows:
        row["ratio_to_full"] = row["int8"] / full
    targets = {"5 shots": 0.90, "active 200": 0.97}
    print(f"\nfully-labeled student (true labels of all {args.pool:,} pool images), int8 test accuracy: {full:.4f}")
    print(f"{'setting':>12} {'human labels':>13} {'label acc':>10} {'int8 test':>10} {'/ full':>7} {'target':>7}"
          f" {'mean F1':>8}  weakest recall (int8)")
    for row in rows:
        t = targets.get(row["setting"])
        print(f"{row['setting']:>12} {row['human_labels']:>13} {row['teacher_label_accuracy']:>10.4f} "
              f"{row['int8']:>10.4f} {row['ratio_to_full']:>7.3f} {f'>= {t:.2f}' if t else '':>7}"
              f" {row['mean_f1']:>8.3f}  {row['weakest_class']} {row['weakest_recall']:.3f}")
    OUT.mkdir(exist_ok=True)
    # seed 0 with the default settings is the README's plot; another draw, --set or --train does not replace it
    stem = args.name or ("labels_needed" + (f"-seed{args.seed}" if args.seed else "") + ("-set" if label else "")
                         + ("-train" if train else "")
                         + (f"-refresh{args.refresh}" if args.refresh != REFRESH_EVERY else ""))
    (OUT / f"{stem}.json").write_text(json.dumps({"full_int8": full, "rows": rows, "pool": args.pool,
                                                 "seed": args.seed, "label_settings": label, "train_settings": train,
                                                 "refresh": args.refresh}, indent=2))
    _plot(rows, full, OUT / f"{stem}.png")
    print(f"\nwrote {OUT / f'{stem}.json'} and {OUT / f'{stem}.png'}")


def _plot(rows: list[dict], full: float, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 3.6), dpi=120)
    for kind, marker in (("shots", "o"), ("active", "s")):
        pts = [(r["human_labels"], r["int8"]) for r in rows if kind in r["setting"]]
        if pts:
            ax.plot(*zip(*pts), marker=marker, label="k example images per class" if kind == "shots"
                    else "5 shots + active learning (oracle answers)")
    ax.axhline(full, color="k", linestyle="--", linewidth=1, label="fully labeled (60k true labels)")
    # the targets: 0.90x of it with 5 shots (4 named classes: 20 labels), 0.97x with 200 answers on top
    ax.plot([20, 220], [0.90 * full, 0.97 * full], linestyle="none", marker="_", markersize=18, color="tab:red",
            markeredgewidth=2, label="targets: 0.90x at 5 shots, 0.97x at 200 answers")
    ax.set_xscale("log")
    ax.set_xlabel("human labels")
    ax.set_ylabel("int8 student test accuracy")
    ax.legend(fontsize=8, loc="lower right")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)


if __name__ == "__main__":
    main()
