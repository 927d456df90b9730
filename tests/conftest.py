"""Shared fixtures: an isolated embedding cache, and small synthetic image folders."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

SHAPES = ("circle", "square", "triangle")


@pytest.fixture(scope="session", autouse=True)
def _isolated_cache(tmp_path_factory):
    """Session-wide, so module-scoped builds never read or write the user's real cache either."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("NANOFACTORY_CACHE", str(tmp_path_factory.mktemp("cache")))
        yield


def _shape_image(kind: str, rng: np.random.Generator, size: int = 48) -> np.ndarray:
    """A coloured shape on a noisy background; 'other' is a random stripe pattern."""
    yy, xx = np.mgrid[:size, :size]
    img = rng.integers(0, 60, (size, size, 3)).astype(np.uint8)
    color = rng.integers(150, 256, 3).astype(np.uint8)
    cx, cy, r = rng.integers(16, size - 16), rng.integers(16, size - 16), rng.integers(9, 14)
    if kind == "circle":
        mask = (xx - cx) ** 2 + (yy - cy) ** 2 <= r * r
    elif kind == "square":
        mask = (abs(xx - cx) <= r) & (abs(yy - cy) <= r)
    elif kind == "triangle":
        mask = (yy - cy <= r) & (yy - cy >= -r) & (abs(xx - cx) <= (yy - cy + r) / 2)
    else:
        mask = ((xx + rng.integers(0, 8)) // 4) % 2 == 0
    img[mask] = color
    return img


def write_shapes(folder: Path, per_class: int, seed: int, kinds=SHAPES + ("other",), by_class: bool = False) -> Path:
    from PIL import Image

    rng = np.random.default_rng(seed)
    for kind in kinds:
        target = folder / kind if by_class else folder / f"batch{rng.integers(0, 3)}"
        target.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            Image.fromarray(_shape_image(kind, rng)).save(target / f"{kind}-{seed}-{i}.png")
    return folder


@pytest.fixture(scope="session")
def shapes_data(tmp_path_factory) -> dict[str, Path]:
    """An unlabeled pool (shapes mixed in subfolders), 3 examples per shape, and a labeled test folder."""
    root = tmp_path_factory.mktemp("shapes")
    pool = write_shapes(root / "pool", 60, seed=1)
    examples = write_shapes(root / "examples", 3, seed=2, kinds=SHAPES, by_class=True)
    test = write_shapes(root / "test", 15, seed=3, by_class=True)
    return {"pool": pool, "examples": examples, "test": test}


@pytest.fixture(scope="session")
def zoo(tmp_path_factory):
    """The compiler tests' models (tests/compiler_zoo.py), compiled once for the session."""
    from compiler_zoo import Zoo

    return Zoo(tmp_path_factory.mktemp("compiler"))
