"""Does synthetic data help a class with few real images? Fashion-MNIST, measured on real held-out images.

    .venv/bin/python bench/synthetic.py [--per-class 200] [--short Sandal Bag --short-count 10]
                                        [--minutes 4] [--candidates 300] [--seeds 3]

Setup: a labeled set with ``--per-class`` real images of each Fashion-MNIST class except the
``--short`` ones, which get ``--short-count``. Offline image default: a class-conditional DDPM
(generators.ddpm) trained on that set for ``--minutes``, ``--candidates`` images drawn per
short class, judged by the EfficientNet-Lite teacher (a class-balanced linear head on its
embeddings of the labeled set, as the labeler's self-training does) and passed through the
quality gate (generators.gate). The same student (DS-CNN, same epochs and seeds) is then
trained on five sets and tested on the Fashion-MNIST test split (real images, true labels):

  real only           the labeled set
  + gated synthetic   plus the samples the gate kept, within the share cap (what a build uses)
  + gated, no cap     plus every sample the teacher agreed with and that was no duplicate
  + all candidates    plus every candidate, ungated
  + as many real      plus as many extra *real* images of the short classes as "+ gated synthetic"
                      (the reference: what the same number of real images would have done)

Prints overall test accuracy and the short classes' recall (mean over seeds), the gate's
rejection counts, and the time of each part.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from generators import create_generator
from generators.base import safe_name
from generators.ddpm import DDPMConfig, train_ddpm
from generators.gate import GateConfig, TeacherJudge, apply_gate
from knowledge.index import VectorIndex
from knowledge.labeling import Projection
from knowledge.pools import FASHION_MNIST_CLASSES, load_fashion_mnist
from knowledge.teachers import TeacherConfig, create_teacher
from tools.student import ds_cnn
from tools.train import TrainConfig, predict, to_input, train_student

NAMES = {"T-shirt/top": "t-shirt", "Trouser": "trouser", "Pullover": "pullover", "Dress": "dress", "Coat": "coat",
         "Sandal": "sandal", "Shirt": "shirt", "Sneaker": "sneaker", "Bag": "bag", "Ankle boot": "ankle boot"}


def split(truth: np.ndarray, short: list[int], per_class: int, short_count: int, rng: np.random.Generator):
    """Indices of the labeled set, of spare real images of the short classes, and of a validation set."""
    labeled, spare, val = [], {}, []
    for c in range(len(FASHION_MNIST_CLASSES)):
        idx = rng.permutation(np.where(truth == c)[0])
        n = short_count if c in short else per_class
        labeled += idx[:n].tolist()
        val += idx[n:n + 30].tolist()
        spare[c] = idx[n + 30:]
    return np.array(labeled), spare, np.array(val)


def evaluate(x, y, soft, val_x, val_y, test_x, test_y, short, epochs: int, seeds: int) -> tuple[float, dict[int, float]]:
    student = ds_cnn(8, 28, 1, len(FASHION_MNIST_CLASSES))
    accs, recalls = [], {c: [] for c in short}
    for seed in range(seeds):
        # batch 64: a set of ~2,000 images needs more than the default batch's 8 steps an epoch
        model = train_student(student, x, y, soft, val_x, val_y, TrainConfig(epochs=epochs, batch_size=64), seed=seed,
                              progress=False).model
        pred = predict(model, to_input(test_x))
        accs.append(float((pred == test_y).mean()))
        for c in short:
            recalls[c].append(float((pred[test_y == c] == c).mean()))
    return float(np.mean(accs)), {c: float(np.mean(r)) for c, r in recalls.items()}


def save_grid(path: Path, images: np.ndarray, keep: np.ndarray, per_row: int = 16) -> None:
    """Kept candidates on the first rows, rejected ones below, for looking at what the gate does."""
    from PIL import Image

    rows = []
    for group in (images[keep][: 4 * per_row], images[~keep][: 4 * per_row]):
        group = np.concatenate([group, np.zeros((-len(group) % per_row, *images.shape[1:]), np.uint8)])
        rows += [np.concatenate(list(group[i:i + per_row, ..., 0]), axis=1) for i in range(0, len(group), per_row)]
        rows.append(np.full((4, per_row * images.shape[2]), 128, np.uint8))  # a grey line between the groups
    Image.fromarray(np.concatenate(rows)).resize((per_row * 56, sum(r.shape[0] for r in rows) * 2)).save(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--per-class", type=int, default=200)
    parser.add_argument("--short", nargs="+", default=["Sandal", "Bag"], choices=FASHION_MNIST_CLASSES)
    parser.add_argument("--short-count", type=int, default=10)
    parser.add_argument("--minutes", type=float, default=4.0, help="DDPM training budget")
    parser.add_argument("--candidates", type=int, default=300, help="generated per short class")
    parser.add_argument("--max-share", type=float, default=GateConfig().max_share)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--seeds", type=int, default=3, help="student seeds per arm")
    parser.add_argument("--test", type=int, default=10000, help="test images (Fashion-MNIST test split)")
    parser.add_argument("--grid", type=Path, help="also write PNG grids of kept and rejected candidates (GRID-<class>.png)")
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    train, test = load_fashion_mnist("train"), load_fashion_mnist("test", limit=args.test)
    classes = list(FASHION_MNIST_CLASSES)
    truth = np.array([classes.index(h) for h in train.hidden_labels])
    test_x, test_y = test.pixels, np.array([classes.index(h) for h in test.hidden_labels])
    short = [classes.index(s) for s in args.short]
    labeled, spare, val = split(truth, short, args.per_class, args.short_count, rng)
    x, y = train.pixels[labeled], truth[labeled]
    print(f"labeled: {len(labeled)} real images ({args.per_class} per class, {args.short_count} of "
          f"{', '.join(args.short)}); test: {len(test_y)} real images; student seeds: {args.seeds}")

    times = {}
    started = time.perf_counter()
    teacher = create_teacher(TeacherConfig())
    emb = teacher.embed(x)
    projection = Projection.fit(emb, 128, seed=0, groups=teacher.embedding_groups)
    index = VectorIndex.build(projection.apply(emb))
    judge = TeacherJudge(teacher=teacher, pool_embeddings=projection.apply(emb), pool_labels=y,
                         num_labels=len(classes), prompts=[f"a photo of a {NAMES[c]}" for c in classes], other=False,
                         projection=projection, pool_index=index)
    times["teacher (labeled set)"] = time.perf_counter() - started

    gate = GateConfig(max_share=args.max_share)
    no_cap = GateConfig(max_share=0.999, min_keep=10**6)
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        trained = train_ddpm(x, y, classes, DDPMConfig(budget_minutes=args.minutes), Path(tmp) / "ddpm", progress=True)
        times[f"DDPM training ({trained.steps} steps)"] = time.perf_counter() - started
        generator = create_generator(DDPMConfig(model=str(trained.path)))
        syn_x, syn_y, all_x, all_y, open_x, open_y = [], [], [], [], [], []
        for c in short:
            started = time.perf_counter()
            images = generator.sample(c, list(range(c * 100_000, c * 100_000 + args.candidates)))
            times[f"DDPM sampling {args.candidates} {classes[c]}"] = time.perf_counter() - started
            started = time.perf_counter()
            e, p = judge(images, c)
            decision = apply_gate(e, p, c, index, args.short_count, gate)
            passed = apply_gate(e, p, c, index, args.short_count, no_cap).keep
            times[f"teacher + gate {classes[c]}"] = time.perf_counter() - started
            print(f"gate {classes[c]}: rejected {decision.rejection_rate:.1%} of {len(images)} ("
                  + ", ".join(f"{k} {v}" for k, v in decision.rejected.items() if k != "over the cap")
                  + f"); {int(passed.sum())} passed, {decision.kept} kept within the cap of {decision.cap}")
            open_x.append(images[passed])
            open_y.append(np.full(int(passed.sum()), c))
            syn_x.append(images[decision.keep])
            syn_y.append(np.full(decision.kept, c))
            all_x.append(images)
            all_y.append(np.full(len(images), c))
            if args.grid:
                save_grid(args.grid.with_name(f"{args.grid.stem}-{safe_name(classes[c])}.png"), images, decision.keep)
    syn_x, syn_y = np.concatenate(syn_x), np.concatenate(syn_y)
    extra = np.concatenate([spare[c][: int((syn_y == c).sum())] for c in short])
    # hard labels in every arm: the comparison is about the images, not the targets
    arms = {
        "real only": (x, y, None),
        "+ gated synthetic": (np.concatenate([x, syn_x]), np.concatenate([y, syn_y]), None),
        "+ gated, no cap": (np.concatenate([x, *open_x]), np.concatenate([y, *open_y]), None),
        "+ all candidates": (np.concatenate([x, *all_x]), np.concatenate([y, *all_y]), None),
        "+ as many real": (np.concatenate([x, train.pixels[extra]]), np.concatenate([y, truth[extra]]), None),
    }
    header = f"{'training set':<20} {'images':>7} {'test acc':>9} " + " ".join(f"{classes[c] + ' recall':>14}" for c in short)
    print(header)
    for name, (ax, ay, soft) in arms.items():
        started = time.perf_counter()
        acc, recall = evaluate(ax, ay, soft, train.pixels[val], truth[val], test_x, test_y, short, args.epochs,
                               args.seeds)
        times[f"students: {name}"] = time.perf_counter() - started
        print(f"{name:<20} {len(ay):>7} {acc:>9.4f} " + " ".join(f"{recall[c]:>14.4f}" for c in short))
    print("time: " + "; ".join(f"{k} {v:.0f} s" for k, v in times.items()))


if __name__ == "__main__":
    main()
