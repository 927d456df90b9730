"""Teacher resolution and labeling method, measured on Fashion-MNIST (the demo's task).

    .venv/bin/python bench/teacher.py [--pool 12000] [--sizes 64 96] [--stages 0 4] [--grid 0 2] \
        [--seeds 3] [--models efficientnet-lite0]

Prints, for each teacher model, input size and number of stages whose pooled outputs join the
head features (0: the head alone; the default teacher takes 4) and how many of those are pooled
over a 2 x 2 grid instead of globally (--grid; the default teacher grids 2): throughput (images/s on this
machine) and the label accuracy on the demo's 5-class task (shirt, trouser, sneaker, bag, other)
with 5 examples per named class, for three labelers:
  nearest-mean   each sample takes the class of the closest example mean (cannot say "other":
                 a sample is "other" only when it is below the lowest example-to-mean similarity)
  cluster votes  knowledge.labeling's few-shot clustering votes alone
  full           knowledge.labeling.auto_label (votes x zero-shot, then self-training)
  full +N        the same with N random pool images' true labels as a person's answers (--answers)
and the ceiling of the teacher's features for this task: a linear head (logistic regression on the
same projected embeddings) trained on the true labels of half the pool, tested on the other half.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from agent.data import label_index
from knowledge.labeling import (
    LabelConfig,
    Projection,
    auto_label,
    cluster_votes,
    label_projected,
    zero_shot_distribution,
)
from knowledge.pools import load_fashion_mnist
from knowledge.teachers import TeacherConfig
from knowledge.teachers.efficientnet_lite import (
    GRID_STAGES,
    TAPPED_STAGES,
    EfficientNetLiteTeacher,
)

CLASSES = ["shirt", "trouser", "sneaker", "bag"]
LABELS = CLASSES + ["other"]


def nearest_mean(emb: np.ndarray, ex: np.ndarray, ex_labels: np.ndarray) -> np.ndarray:
    means = np.stack([ex[ex_labels == c].mean(0) for c in range(len(CLASSES))])
    means /= np.linalg.norm(means, axis=1, keepdims=True)
    sims = emb @ means.T
    own = [float(ex[i] @ means[ex_labels[i]]) for i in range(len(ex))]
    pred = sims.argmax(1)
    pred[sims.max(1) < min(own)] = len(CLASSES)
    return pred


def linear_ceiling(emb: np.ndarray, truth: np.ndarray, groups) -> float:
    """Accuracy of logistic regression on the projected embeddings, fitted on the true labels of a random half."""
    from sklearn.linear_model import LogisticRegression

    x = Projection.fit(emb, LabelConfig().pca_dims, 0, groups).apply(emb)
    order = np.random.default_rng(0).permutation(len(x))
    train, test = order[: len(x) // 2], order[len(x) // 2 :]
    head = LogisticRegression(max_iter=1000).fit(x[train], truth[train])
    return float((head.predict(x[test]) == truth[test]).mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pool", type=int, default=12000)
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 96])
    parser.add_argument("--stages", type=int, nargs="+", default=[0, TAPPED_STAGES],
                        help="EfficientNet-Lite stages whose pooled outputs join the head features")
    parser.add_argument("--grid", type=int, nargs="+", default=[GRID_STAGES],
                        help="of those stages, how many (the first) are pooled over a 2 x 2 grid")
    parser.add_argument("--answers", type=int, default=200,
                        help="random pool images whose true labels the 'full +N' labeler gets as answers")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--models", nargs="+", default=["efficientnet-lite0"],
                        help="teacher models (efficientnet-lite1/-lite2 need their weights packages)")
    args = parser.parse_args()

    pool = load_fashion_mnist("train", limit=args.pool)
    truth = np.array([label_index(h, LABELS, other=True) for h in pool.hidden_labels])
    print(f"pool: {len(pool)} Fashion-MNIST train images; 5 examples per named class; seeds: {args.seeds}")
    print(f"{'model':>18} {'size':>4} {'stages':>6} {'grid':>4} {'img/s':>7} {'nearest-mean':>13} {'cluster votes':>14} {'full':>7} {f'full +{args.answers}':>10} {'linear, true labels':>20}")
    settings = [(m, s, k, min(g, k)) for m in args.models for s in args.sizes for k in args.stages for g in args.grid]
    for model, size, stages, grid in dict.fromkeys(settings):  # a stage count under the grid's: all its stages gridded
        teacher = EfficientNetLiteTeacher(TeacherConfig(model=model, image_size=size), stages=stages, grid_stages=grid)
        teacher.embed(pool.pixels[:64])  # warm-up
        started = time.perf_counter()
        emb = teacher.embed(pool.pixels)
        rate = len(emb) / (time.perf_counter() - started)
        zero_shot = teacher.class_scores(emb, [f"a photo of a {c}" for c in CLASSES])
        scores = {"nearest": [], "votes": [], "full": [], "answers": []}
        for seed in range(args.seeds):
            rng = np.random.default_rng(seed)
            ex_idx = np.concatenate([rng.choice(np.where(truth == c)[0], 5, replace=False) for c in range(4)])
            ex_labels = np.repeat(np.arange(4), 5)
            cfg = LabelConfig()
            projection = Projection.fit(emb, cfg.pca_dims, seed, teacher.embedding_groups)
            p_emb, p_ex = projection.apply(emb), projection.apply(emb[ex_idx])
            scores["nearest"].append((nearest_mean(p_emb, p_ex, ex_labels) == truth).mean())
            votes = cluster_votes(p_emb, p_ex, ex_labels, zero_shot_distribution(zero_shot, True), 5, True, cfg, seed)
            scores["votes"].append((votes.argmax(1) == truth).mean())
            full = auto_label(emb, zero_shot, emb[ex_idx], ex_labels, True, cfg, seed, teacher.embedding_groups)
            scores["full"].append((full.labels == truth).mean())
            asked = rng.choice(len(emb), args.answers, replace=False)
            answered = label_projected(p_emb, projection, p_ex, zero_shot, ex_labels, True, cfg, seed,
                                       anchor_rows=asked, anchor_labels=truth[asked])
            scores["answers"].append((answered.labels == truth).mean())
        m = {k: f"{np.mean(v):.3f}" for k, v in scores.items()}
        ceiling = linear_ceiling(emb, truth, teacher.embedding_groups)
        print(f"{model:>18} {size:>4} {stages:>6} {grid:>4} {rate:>7.0f} {m['nearest']:>13} {m['votes']:>14} {m['full']:>7} {m['answers']:>10} {ceiling:>20.3f}")


if __name__ == "__main__":
    main()
