"""Is a difference between two builds real, or the training seed? Retrain each run's student.

    .venv/bin/python bench/student_seeds.py RUN [RUN ...] [--seeds 3]

For each finished run (a folder under runs/), trains the run's own student architecture on the
run's own training data (its auto-labels, soft targets and validation split, as the train stage
does) with seeds 0 .. N-1, and prints the fp32 test accuracy per seed, the mean and the spread.
Two builds whose labels differ (a labeler change, review answers) compare on the same seeds; one
student's test accuracy moves by most of a point from the seed alone.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", type=Path, nargs="+", help="finished run folders with a labeled test set")
    parser.add_argument("--seeds", type=int, default=3, help="training seeds 0 .. N-1 (default 3)")
    args = parser.parse_args()

    import torch

    from agent.pipeline import open_run
    from agent.runs import RunStore
    from agent.stage_compile import evaluation_inputs
    from agent.stages import StageContext, _training_data
    from tools.train import predict, train_student

    rows = []
    for folder in args.runs:
        if not (folder / "stages" / "label.json").is_file():
            sys.exit(f"{folder} is not a labeled run folder: pass runs/<id> of a finished build.")
        run = open_run(RunStore(folder.parent), folder.name)
        ctx = StageContext(run=run, show_bars=False)
        if ctx.test is None:
            sys.exit(f"Run {folder.name} has no labeled test set, so there is nothing to measure against.")
        inputs, x, y, soft, val, val_y = _training_data(ctx)
        tx, ty = evaluation_inputs(ctx)
        step = run.plan.step("train")
        accs = []
        for seed in range(args.seeds):
            result = train_student(step.student, x, y, soft, inputs[val], val_y, step.train, seed=seed,
                                   desc=folder.name, progress=False)
            accs.append(float((predict(result.model, torch.from_numpy(tx)) == ty).mean()))
            print(f"  {folder.name}, seed {seed}: fp32 test {accs[-1]:.4f}", flush=True)
        rows.append((folder.name, len(x), np.array(accs)))
    print(f"\n{'run':<24} {'train images':>12} {'fp32 test per seed':<28} {'mean':>7} {'sd':>7}")
    for name, n, accs in rows:
        sd = accs.std(ddof=1) if len(accs) > 1 else float("nan")
        print(f"{name:<24} {n:>12,} {', '.join(f'{a:.4f}' for a in accs):<28} {accs.mean():>7.4f} {sd:>7.4f}")


if __name__ == "__main__":
    main()
