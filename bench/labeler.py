"""Label accuracy of the few-shot labeler over many draws of examples, for labeler settings side by side.

    .venv/bin/python bench/labeler.py [--run runs/<id>] [--shots 5] [--draws 6] \
        [--set restarts=2 --set restarts=8 ...]

Takes a finished build whose pool has hidden labels (default: the newest run under ./runs, e.g.
after `make demo`) and re-labels its pool from the cached teacher embeddings — no teacher, no
training, a few seconds per labeling. Each draw picks k example images per named class from the
pool at random (seeded: draw d uses seed d), as a person's examples would be; the table shows the
label accuracy against the hidden labels for every draw, their mean and spread, the recall averaged
over the labels (a labeler that gives a hard class to "other" can gain accuracy and lose recall) and
the class with the lowest recall, for each ``--set`` (``key=value[,key=value]`` overrides of the
run's LabelConfig; none: the run's own settings).

Which examples a person gives moves the label accuracy by several points, so a setting is judged
by its mean over draws, never by one draw (bench/labels_needed.py uses one draw per seed).

With ``--active 50 200 500`` each draw then goes through review rounds as `nanofactory review`
would ask them (agent.review.queue_order: uncertain and diverse images, alternating with spot
checks drawn at random), answered from the hidden labels, and is re-labeled with the answers after
each round (as the label stage of a retrained run does: answers steer the self-training head and
keep their label); ``--spot-checks 0 0.5`` compares shares of random images in the queue. Rounds
every 25 answers (``--active 25 50 75 ... 200``) are what one ``nanofactory review`` session does
(``agent.review.review_session``, ``--refresh 25``); ``--active 200`` is one round ranked once.
``--queue balanced margin confused`` compares how the uncertain questions are picked: shared evenly
over the classes, by margin alone, or part of them (``--targeted``) on the class pairs the session's
spot checks found confused (tried and left out of the review queue: README).

    .venv/bin/python bench/labeler.py --shots 5 --draws 5 --active 50 200 500 --spot-checks 0 0.5
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def overrides(text: str) -> dict:
    """'restarts=8,self_training_threshold=0.9' -> {'restarts': 8, 'self_training_threshold': 0.9}."""
    out = {}
    for part in filter(None, text.split(",")):
        key, sep, value = part.partition("=")
        if not sep:
            raise SystemExit(f"--set {text!r}: expected key=value pairs separated by commas, e.g. restarts=8")
        out[key.strip()] = yaml.safe_load(value)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, help="a finished run folder (default: newest in ./runs)")
    parser.add_argument("--shots", type=int, nargs="+", default=[5], help="example images per named class")
    parser.add_argument("--draws", type=int, default=6, help="random draws of examples per setting")
    parser.add_argument("--other-shots", type=int, nargs="+", default=[0],
                        help="example images of 'other' (drawn from the images of no named class) beside the "
                        "named classes' shots; 0: none, as in the demo")
    parser.add_argument("--set", dest="settings", action="append", default=[],
                        help="LabelConfig overrides, key=value[,key=value]; repeat to compare settings")
    parser.add_argument("--active", type=int, nargs="+", default=[],
                        help="after the examples, review rounds answered from the hidden labels up to these totals")
    parser.add_argument("--queue", choices=["balanced", "margin", "confused"], nargs="+", default=["balanced"],
                        help="how the queue picks its uncertain questions: shared evenly over the classes' "
                        "boundaries (the default), by margin alone, or part of them on the class pairs the "
                        "spot checks so far found confused (--targeted)")
    parser.add_argument("--targeted", type=float, default=None,
                        help="with --queue confused: share of the uncertain questions on confused pairs "
                        "(default: agent.review.TARGETED_SHARE, 0.5)")
    parser.add_argument("--spot-checks", type=float, nargs="+",
                        help="share of the review queue drawn at random (default: the queue's own)")
    args = parser.parse_args()

    from pydantic import ValidationError

    from agent.data import hidden_truth
    from agent.pipeline import open_run
    from agent.review import SPOT_CHECK, SPOT_CHECK_SHARE, TARGETED_SHARE, queue_order
    from agent.runs import RunStore
    from agent.stages import StageContext
    from knowledge.labeling import LabelConfig, Projection, label_projected
    from knowledge.spreading import neighbour_graph

    folder = args.run or max((p for p in Path("runs").glob("2*") if (p / "index" / "pool_vectors.npy").is_file()),
                             key=lambda p: p.stat().st_mtime, default=None)
    if folder is None or not (folder / "index" / "pool_vectors.npy").is_file():
        sys.exit("No finished run with a labeled pool: run `make demo` first or pass --run runs/<id>.")
    run = open_run(RunStore(folder.parent), folder.name)
    truth = hidden_truth(StageContext(run=run, show_bars=False).pool, run.spec)
    if truth is None or (truth < 0).any():
        sys.exit(f"Run {folder.name}'s pool has no hidden label for every image; this benchmark needs them "
                 "(the demo's Fashion-MNIST pool has).")
    base = run.plan.step("label").label
    try:
        configs = [(s or "run's settings", LabelConfig(**{**base.model_dump(), **overrides(s)}))
                   for s in (args.settings or [""])]
    except ValidationError as e:
        sys.exit(f"--set: {e.errors()[0]['loc'][0]}: {e.errors()[0]['msg']}")
    vectors = np.load(folder / "index" / "pool_vectors.npy").astype(np.float32)
    projection = Projection.load(folder / "index" / "projection.npz")
    with np.load(folder / "data" / "teacher.npz") as z:
        zero_shot = z["zero_shot"]
    # the pool's k-NN graph for label spreading, made once per neighbour count the settings ask for
    graphs = {k: neighbour_graph(vectors, k) for k in {cfg.spread_neighbours for _, cfg in configs} if k}
    named = len(run.spec.classes)
    print(f"run {folder.name}: {len(truth):,} pool images, {named} named classes"
          f"{' + other' if run.spec.other else ''}; label accuracy against the hidden labels")
    names = run.spec.label_names
    # whether the teacher's zero-shot scores know the classes: a class's mean score on its own images against
    # on the rest (about equal: the zero-shot tilt can only act as a prior toward "other")
    print("zero-shot score of each named class, mean on its own images / on the others: " + ", ".join(
        f"{names[c]} {zero_shot[truth == c, c].mean():.2g} / {zero_shot[truth != c, c].mean():.2g}"
        for c in range(named)))
    print(f"{'shots':>5} {'setting':>40} {'mean':>7} {'sd':>6} {'recall':>7} {'worst class':>16}  "
          f"per draw (seed 0, 1, ...)   s/labeling")
    for k, other_k in ((k, o) for k in args.shots for o in args.other_shots):
        if other_k and not run.spec.other:
            sys.exit("--other-shots: this run has no 'other' class")
        draws = []
        for d in range(args.draws):
            rng = np.random.default_rng(d)
            idx = np.concatenate([rng.choice(np.flatnonzero(truth == c), k, replace=False) for c in range(named)])
            if other_k:  # drawn after the named classes', so a draw's named examples do not change with it
                idx = np.concatenate([idx, rng.choice(np.flatnonzero(truth == named), other_k, replace=False)])
            draws.append((idx, truth[idx]))
        for name, cfg in configs:
            for share, queue in ([(sc, q) for sc in args.spot_checks or [SPOT_CHECK_SHARE] for q in args.queue]
                                 if args.active else [(None, None)]):
                rounds = [0, *sorted(args.active)]
                accs, recalls = {r: [] for r in rounds}, {r: [] for r in rounds}
                t, labelings = time.perf_counter(), 0
                for d, (idx, labels) in enumerate(draws):
                    asked, probs, spots = np.zeros(0, np.int64), None, []
                    for r in rounds:
                        if r:
                            misses = None
                            if queue == "confused":  # what a person's spot checks so far say of the session's
                                misses = np.zeros((len(names), len(names)), np.int64)  # first labels
                                np.add.at(misses, (truth[spots], guess[spots]), 1)
                                misses[np.diag_indices(len(names))] = 0
                            order = queue_order(probs, vectors, r - len(asked), asked, seed=d, spot_checks=share,
                                                balanced=queue != "margin", misses=misses,
                                                targeted=TARGETED_SHARE if args.targeted is None else args.targeted)
                            asked = np.concatenate([asked, np.array([i for i, _ in order], np.int64)])
                            spots += [i for i, why in order if why == SPOT_CHECK]
                        probs = label_projected(vectors, projection, vectors[idx], zero_shot, labels, run.spec.other,
                                                cfg, seed=run.spec.seed, anchor_rows=asked if r else None,
                                                anchor_labels=truth[asked] if r else None,
                                                graph=graphs.get(cfg.spread_neighbours)).probs
                        labelings += 1
                        if not r:
                            guess = probs.argmax(1)  # the labels a session's spot checks are compared with
                        predicted = probs.argmax(1)
                        predicted[asked] = truth[asked]  # a person's answer is the label
                        accs[r].append(float((predicted == truth).mean()))
                        recalls[r].append([float((predicted[truth == c] == c).mean()) for c in range(len(names))])
                seconds = (time.perf_counter() - t) / labelings
                for r in rounds:
                    recall = np.mean(recalls[r], 0)  # per class, over draws
                    worst = int(recall.argmin())
                    setting = name if share is None else \
                        f"{name}, spot checks {share:g}{'' if queue == 'balanced' else ', ' + queue}, {r} answers"
                    print(f"{f'{k}+{other_k}' if other_k else k:>5} {setting:>40} {np.mean(accs[r]):>7.4f} {np.std(accs[r]):>6.4f} "
                          f"{recall.mean():>7.4f} {f'{names[worst]} {recall[worst]:.3f}':>16}  "
                          f"{' '.join(f'{a:.3f}' for a in accs[r]):<28} {seconds:.1f}", flush=True)


if __name__ == "__main__":
    main()
