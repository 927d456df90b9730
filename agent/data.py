"""Turn a spec's data section into pools, example images and a labeled test set."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from agent.spec import DesignSpec, PoolSource
from knowledge.errors import NanofactoryError
from knowledge.pools import ImagePool, concat, image_files, load_fashion_mnist, load_folder, unreadable_image_errors

log = logging.getLogger(__name__)


def load_source(source: PoolSource, flag: str = "--images") -> ImagePool:
    """The images of one source; ``flag``: the option that named it, for the error when a folder has none."""
    if source.kind == "fashion-mnist":
        return load_fashion_mnist(source.split, source.limit)
    return load_folder(source.path, source.limit, flag)


MIN_POOL = 10  # fewer images than this cannot be clustered, split for validation and trained on


def load_pool(spec: DesignSpec, flag: str = "--images") -> ImagePool:
    """The spec's pool; ``flag``: what named it, for the error when a folder is missing or empty."""
    pool = concat([load_source(s, flag) for s in spec.data.pool])
    if len(pool) < MIN_POOL:
        raise NanofactoryError(
            f"The pool holds {len(pool)} readable image(s); a build needs at least {MIN_POOL} (and hundreds per class "
            f"to learn well): add images to the pool folder ({flag})."
        )
    return pool


def native_shape(pool: ImagePool) -> tuple[int | None, int | None]:
    """(side, channels) of in-memory images (Fashion-MNIST: 28, 1); (None, None) for folders of files."""
    if pool.pixels is None:
        return None, None
    return pool.pixels.shape[1], pool.pixels.shape[3]


def hidden_truth(pool: ImagePool, spec: DesignSpec) -> np.ndarray | None:
    """Label index of every hidden label (-1: matches no output), or None when the pool has none. Measuring only."""
    if not pool.hidden_labels:
        return None
    return np.array([label_index(h, spec.label_names, spec.other) for h in pool.hidden_labels], np.int64)


def _norm(name: str) -> str:
    """A matching key: "Trouser", "trousers" and "TROUSERS" agree; "T-shirt/top" and "shirt" do not."""
    from agent.parse import singular

    words = re.sub(r"[^a-z0-9]+", " ", name.lower()).split()
    return " ".join(singular(w).rstrip("s") for w in words)


def label_index(name: str | None, label_names: list[str], other: bool) -> int:
    """Index of a class name (plural, case and punctuation tolerant); 'other' or -1 when none matches."""
    if name is None:
        return -1
    key = _norm(name)
    for i, label in enumerate(label_names):
        if _norm(label) == key:
            return i
    return len(label_names) - 1 if other else -1


@dataclass
class Examples:
    """User-labeled example images: ``paths[i]`` has label ``labels[i]``."""

    paths: list[Path]
    labels: np.ndarray
    pool: ImagePool | None

    def counts(self, label_names: list[str]) -> dict[str, int]:
        return {name: int((self.labels == i).sum()) for i, name in enumerate(label_names)}


def load_examples(spec: DesignSpec) -> Examples:
    """Examples from ``spec.data.examples_dir`` (one subfolder per class) and from each class's list."""
    names = spec.label_names
    paths: list[Path] = []
    labels: list[int] = []
    folder = spec.data.examples_dir
    if folder is not None:
        folder = Path(folder)
        if not folder.is_dir():
            raise NanofactoryError(
                f"Examples folder {folder} {'is a file' if folder.exists() else 'does not exist'}; pass a folder with "
                "one subfolder of images per class."
            )
        subfolders = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
        if not subfolders and image_files(folder):
            raise NanofactoryError(
                f"Examples folder {folder} holds images but no class subfolders; put each class's examples in a "
                f"subfolder named after it ({', '.join(names[:3])}{', ...' if len(names) > 3 else ''})."
            )
        for sub in subfolders:
            i = label_index(sub.name, names, other=False)
            if i < 0 and _norm(sub.name) == "other" and spec.other:
                i = len(names) - 1
            if i < 0:
                raise NanofactoryError(
                    f"Examples subfolder {sub.name!r} matches no class ({', '.join(names)}); rename or remove it."
                )
            files = image_files(sub)
            paths += files
            labels += [i] * len(files)
    for i, cls in enumerate(spec.classes):
        paths += [Path(p) for p in cls.examples]
        labels += [i] * len(cls.examples)
    missing = [p for p in paths if not p.is_file()]
    if missing:
        raise NanofactoryError(f"Example image {missing[0]} does not exist; fix the path or remove it from the spec.")
    if not paths:
        return Examples(paths=[], labels=np.zeros(0, np.int64), pool=None)
    pool = ImagePool(source="examples", uids=[str(p) for p in paths], sha1=[""] * len(paths), paths=paths)
    readable = _readable(pool)
    if len(readable) < len(paths):
        log.warning("skipped %d unreadable example image(s)", len(paths) - len(readable))
        kept = {labels[i] for i in readable}
        lost = [i for i in dict.fromkeys(labels) if i not in kept]
        if lost:  # a class whose every example is unreadable would be labeled as if it had none
            first, n = paths[labels.index(lost[0])], labels.count(lost[0])
            raise NanofactoryError(
                f"None of the {n} example image(s) of {names[lost[0]]!r} can be read (e.g. {first}); "
                "replace them with image files that open (JPEG, PNG)."
            )
    return Examples(paths=[paths[i] for i in readable], labels=np.asarray([labels[i] for i in readable], np.int64),
                    pool=pool.subset(readable))


def _readable(pool: ImagePool) -> list[int]:
    ok = []
    for i in range(len(pool)):
        try:
            pool.load([i], 8, 1)
            ok.append(i)
        except unreadable_image_errors():
            continue
    return ok


def load_test(spec: DesignSpec) -> tuple[ImagePool, np.ndarray] | None:
    """The labeled test set: Fashion-MNIST with its labels, or a folder with one subfolder per class."""
    source = spec.data.test
    if source is None:
        return None
    pool = load_source(source, "--test")
    if source.kind == "folder":
        pool.hidden_labels = [Path(uid).parts[0] if len(Path(uid).parts) > 1 else None for uid in pool.uids]
        unmatched = sorted({h for h in pool.hidden_labels if h is not None and label_index(h, spec.label_names, False) < 0
                            and _norm(h) != "other"})
        if unmatched:  # a misspelt class folder would quietly score as "other" (or not at all)
            log.warning("test subfolder(s) %s match no class (%s); their images count as %s", ", ".join(unmatched),
                        ", ".join(spec.label_names), "'other'" if spec.other else "nothing and are left out")
    y = hidden_truth(pool, spec)
    keep = np.where(y >= 0)[0]
    if len(keep) == 0:
        raise NanofactoryError(
            f"No test image carries a label among {', '.join(spec.label_names)}; the test folder needs one subfolder per class."
        )
    return pool.subset(list(keep)), y[keep]
