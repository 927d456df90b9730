"""How well do zero-cost proxies rank architectures? Kendall tau against trained accuracy.

Samples candidates from a search space under the demo's constraints (STM32F446: 128 KB
SRAM, <= 1.5 M MACs), trains each briefly on Fashion-MNIST (true labels), and reports the
Kendall tau of every proxy, of the rank combinations, and of the #params / MACs
baselines against test accuracy. Also times scoring 1000 candidates (the search's budget).

    .venv/bin/python bench/proxies.py [--candidates 40] [--epochs 2] [--train 10000]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from knowledge.devices import get_device
from knowledge.pools import load_fashion_mnist
from tools.cost import estimate_cost
from tools.proxies import Batch, list_proxies, rank_combination, score_all
from tools.spaces import create_space
from tools.train import TrainConfig, predict, to_input, train_student, true_label_config

SRAM, MAX_MACS = 128 * 1024, 1_500_000


def sample_fitting(space, n: int, rng, device):
    out, seen = [], set()
    while len(out) < n:
        config = space.decode(space.sample(rng))
        cost = estimate_cost(config, device)
        if cost.sram_bytes <= SRAM and cost.macs <= MAX_MACS and config.name not in seen:
            seen.add(config.name)
            out.append((config, cost))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--space", default="mbnet")
    parser.add_argument("--candidates", type=int, default=40)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--train", type=int, default=10000, help="Fashion-MNIST training images")
    parser.add_argument("--test", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    from scipy.stats import kendalltau

    rng = np.random.default_rng(args.seed)
    device = get_device("STM32F446RE")
    from knowledge.pools import FASHION_MNIST_CLASSES

    train_pool, test_pool = load_fashion_mnist("train"), load_fashion_mnist("test")
    train_y = np.array([FASHION_MNIST_CLASSES.index(c) for c in train_pool.hidden_labels])
    test_y = np.array([FASHION_MNIST_CLASSES.index(c) for c in test_pool.hidden_labels])
    idx = rng.choice(len(train_y), args.train, replace=False)
    x_tr, y_tr = train_pool.pixels[idx], train_y[idx]
    x_te, y_te = test_pool.pixels[: args.test], test_y[: args.test]
    import torch

    batch = Batch(x=to_input(x_tr[:64]), y=torch.from_numpy(y_tr[:64].astype(np.int64)))
    space = create_space(args.space, in_channels=1, num_classes=10, resolutions=[28])
    names = list_proxies()

    # scoring speed: what the search spends on 1000 candidates
    timing = sample_fitting(space, 50, np.random.default_rng(args.seed + 1), device)
    start = time.perf_counter()
    for config, _ in timing:
        score_all(config, batch, ["synflow", "naswot"])
    per = (time.perf_counter() - start) / len(timing)
    print(f"scoring synflow + naswot: {per * 1000:.1f} ms per candidate -> 1000 candidates in {per * 1000:.0f} s")

    candidates = sample_fitting(space, args.candidates, rng, device)
    scores = {n: [] for n in names}
    accs = []
    for i, (config, cost) in enumerate(candidates):
        s = score_all(config, batch, names, seed=args.seed)
        for n in names:
            scores[n].append(s[n])
        started = time.perf_counter()
        result = train_student(config, x_tr, y_tr, None, x_te[:500], y_te[:500],
                               true_label_config(TrainConfig(epochs=args.epochs, augment=None)), seed=args.seed, progress=False)
        acc = float((predict(result.model, to_input(x_te)) == y_te).mean())
        accs.append(acc)
        print(f"{i + 1:3d}/{len(candidates)} {config.name[:70]:<70} {cost.macs / 1e6:5.2f} M MACs "
              f"{cost.sram_bytes / 1024:6.1f} KB  acc {acc:.4f}  ({time.perf_counter() - started:.0f} s)", flush=True)
    scores = {n: np.array(v) for n, v in scores.items()}
    accs = np.array(accs)
    print(f"\nKendall tau against test accuracy ({len(accs)} candidates, {args.epochs} epochs on "
          f"{args.train} images; accuracy {accs.min():.3f}-{accs.max():.3f}):")
    rows = [(n, kendalltau(scores[n], accs)[0]) for n in names]
    for combo in (["synflow", "naswot"], ["synflow", "zen"], ["naswot", "zen"], ["synflow", "naswot", "zen"]):
        rows.append(("+".join(combo), kendalltau(rank_combination(scores, combo), accs)[0]))
    for name, tau in sorted(rows, key=lambda r: -r[1]):
        tag = " (baseline)" if name in ("params", "macs") else ""
        print(f"  {name:<22} {tau:+.3f}{tag}")


if __name__ == "__main__":
    main()
