"""On-disk cache of teacher embeddings, keyed by the teacher and the pool's content hash.

Re-running a build on the same pool skips the teacher. The cache lives under
``$NANOFACTORY_CACHE`` (default ``~/.cache/nanofactory``); deleting it is always safe.
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path
from typing import Callable

import numpy as np

from knowledge.io import atomic_path

log = logging.getLogger(__name__)


def cache_dir() -> Path:
    return Path(os.environ.get("NANOFACTORY_CACHE", Path.home() / ".cache" / "nanofactory"))


def cached_embeddings(teacher_key: str, content_hash: str, compute: Callable[[], np.ndarray]) -> np.ndarray:
    key = hashlib.sha1(f"{teacher_key}|{content_hash}".encode()).hexdigest()
    path = cache_dir() / "embeddings" / f"{key}.npy"
    if path.is_file():
        try:
            log.info("teacher embeddings from cache %s", path)
            return np.load(path)
        except (OSError, ValueError):
            log.warning("ignoring unreadable cache file %s", path)
    vectors = compute()
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.save(f, vectors)
    return vectors
