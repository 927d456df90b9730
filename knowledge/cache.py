"""On-disk cache of teacher embeddings, keyed by the teacher and the pool's content hash.

Re-running a build on the same pool skips the teacher. The cache lives under
``$NANOFACTORY_CACHE`` (default ``~/.cache/nanofactory``); deleting it is always safe.
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from knowledge.io import write_npy_chunks

log = logging.getLogger(__name__)


def cache_dir() -> Path:
    return Path(os.environ.get("NANOFACTORY_CACHE", Path.home() / ".cache" / "nanofactory"))


def cached_embeddings(teacher_key: str, content_hash: str, chunks: Callable[[], Iterable[np.ndarray]]) -> Path:
    """The .npy file of the pool's embeddings (float16); ``chunks`` computes them, chunk by chunk, on a miss.

    Callers read the file in chunks (knowledge.io.iter_npy_rows), so memory does not grow with the pool.
    """
    key = hashlib.sha1(f"{teacher_key}|{content_hash}".encode()).hexdigest()
    path = cache_dir() / "embeddings" / f"{key}.npy"
    if path.is_file():
        try:
            np.load(path, mmap_mode="r")  # a readable header and the right size
            log.info("teacher embeddings from cache %s", path)
            return path
        except (OSError, ValueError):
            log.warning("ignoring unreadable cache file %s", path)
    write_npy_chunks(path, chunks(), np.float16)  # half the size of float32; labels unchanged
    return path
