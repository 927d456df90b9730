"""The default demo: a smart-closet camera on an STM32F446, from unlabeled Fashion-MNIST.

The pool is Fashion-MNIST train with its labels hidden. Five example images per named
class are taken from it, as a user would supply them, and written to an ordinary
examples folder; evaluation uses Fashion-MNIST test with its real labels.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from agent.data import label_index
from agent.spec import DataSpec, DesignSpec, PoolSource

DEMO_REQUEST = (
    "a smart-closet camera that sorts shirts, trousers, sneakers, bags and everything else, "
    "on an STM32F446 with 128 KB RAM"
)
EXAMPLES_PER_CLASS = 5


def write_demo_examples(folder: Path, class_names: list[str], seed: int = 0, k: int = EXAMPLES_PER_CLASS) -> Path:
    """Pick ``k`` Fashion-MNIST train images per class (by their hidden label) into folder/<class>/."""
    from PIL import Image

    from knowledge.pools import load_fashion_mnist

    pool = load_fashion_mnist("train")
    truth = np.array([label_index(h, class_names, other=False) for h in pool.hidden_labels])
    rng = np.random.default_rng(seed)
    for i, name in enumerate(class_names):
        target = Path(folder) / name
        target.mkdir(parents=True, exist_ok=True)
        for j in rng.choice(np.where(truth == i)[0], k, replace=False):
            Image.fromarray(pool.pixels[j][..., 0]).save(target / f"fashion-mnist-train-{j}.png")
    return Path(folder)


def demo_spec(runs_root: Path, pool_limit: int | None = None, seed: int = 0,
              examples_per_class: int = EXAMPLES_PER_CLASS) -> DesignSpec:
    from agent.parse import spec_from_request

    probe = spec_from_request(DEMO_REQUEST, DataSpec(pool=[PoolSource(kind="fashion-mnist")]))
    examples = write_demo_examples(Path(runs_root) / "demo-examples", [c.name for c in probe.classes], seed,
                                   examples_per_class)
    data = DataSpec(
        pool=[PoolSource(kind="fashion-mnist", split="train", limit=pool_limit)],
        examples_dir=examples.resolve(),
        test=PoolSource(kind="fashion-mnist", split="test"),
    )
    spec = spec_from_request(DEMO_REQUEST, data)
    return spec.model_copy(update={"seed": seed})
