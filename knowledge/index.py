"""A FAISS vector index over teacher embeddings, saved in the run and reloadable.

Small pools get an exact ``IndexFlatIP``; from ``IVF_MIN`` vectors on, an ``IndexIVFFlat``
(inner product, ~4 sqrt(N) lists) whose ``nprobe`` is calibrated at build time on the data
itself: the smallest of 8, 16, 32, ... whose recall@10 against exact search reaches
``TARGET_RECALL``. Data with no cluster structure, where that would take more than a quarter
of the lists, gets the exact index after all. ``faiss.write_index`` stores ``nprobe`` with an
IVF index, so the calibration survives save/load with no side file.
"""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path

import numpy as np

from knowledge.errors import NanofactoryError
from knowledge.io import atomic_path

log = logging.getLogger(__name__)

IVF_MIN = 100_000  # below this an exact scan is a few ms per query (100k x 128-d) and needs no training
TARGET_RECALL = 0.95  # recall@10 against exact search that the chosen nprobe must reach
NPROBES = (8, 16, 32, 64, 128)  # tried in order; past 128 we keep doubling up to nlist / MAX_PROBED_FRACTION
MAX_PROBED_FRACTION = 4  # needing more than a quarter of the lists means IVF buys little: build flat instead
CALIBRATION_QUERIES = 200
# FAISS guidance: 39 to 256 training points per centroid. k-means time grows linearly with it and dominates the
# build (1M x 384-d, nlist 4096: ~1.5 min of 2 cores at 40); 40 and 64 gave the same recall curve at 200k x 384-d
TRAIN_PER_LIST = 40
MIN_PER_LIST = 39  # fewer points per list than this and FAISS's k-means warns and centroids degrade


class VectorIndex:
    """Cosine-similarity search (inner product over L2-normalized vectors)."""

    def __init__(self, index=None, recall: float | None = None):
        self._index = index
        self.recall = recall  # recall@10 measured when nprobe was calibrated; None for flat or loaded

    @classmethod
    def build(cls, vectors: np.ndarray, *, ivf_min: int | None = None, seed: int = 0) -> VectorIndex:
        """Index ``vectors`` (N, d): exact below ``ivf_min`` rows (default ``IVF_MIN``), else calibrated IVF.

        ``seed`` fixes the k-means training sample and the calibration queries.
        """
        import faiss

        vectors = _normalized(vectors)
        n, d = vectors.shape
        if n < (IVF_MIN if ivf_min is None else ivf_min):
            index = faiss.IndexFlatIP(d)
            index.add(vectors)
            return cls(index)
        return _build_ivf(vectors, seed)

    def __len__(self) -> int:
        return 0 if self._index is None else self._index.ntotal

    @property
    def dim(self) -> int:
        return self._index.d

    @property
    def kind(self) -> str:
        """``"flat"`` or ``"ivf nlist=4096, nprobe=32"``, for reports."""
        import faiss

        ivf = faiss.try_extract_index_ivf(self._index)
        return "flat" if ivf is None else f"ivf nlist={ivf.nlist}, nprobe={ivf.nprobe}"

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(similarities, ids), each (Q, k), best first.

        An IVF index only scans ``nprobe`` lists: when they hold fewer than ``k`` vectors, the
        missing places have id -1 (only possible with a tiny ``nprobe`` or a very large ``k``).
        """
        queries = _normalized(np.atleast_2d(queries))
        if queries.shape[1] != self.dim:
            raise NanofactoryError(
                f"Query vectors have {queries.shape[1]} dimensions but the index has {self.dim}; "
                "embed the queries with the teacher that built the index."
            )
        return self._index.search(queries, min(k, len(self)))

    def save(self, path: Path) -> None:
        import faiss

        with atomic_path(Path(path)) as tmp:
            faiss.write_index(self._index, str(tmp))

    @classmethod
    def load(cls, path: Path) -> VectorIndex:
        import faiss

        if not Path(path).is_file():
            raise NanofactoryError(f"Index file {path} does not exist; rebuild the run's data stage.")
        return cls(faiss.read_index(str(path)))


def ivf_nlist(n: int) -> int:
    """Inverted lists for ``n`` vectors: the power of two nearest 4*sqrt(n), with >= 39 vectors per list."""
    nlist = 2 ** round(math.log2(4 * math.sqrt(n)))
    while nlist > 1 and n < MIN_PER_LIST * nlist:
        nlist //= 2
    return nlist


def _build_ivf(vectors: np.ndarray, seed: int) -> VectorIndex:
    import faiss

    started = time.perf_counter()
    n, d = vectors.shape
    nlist = ivf_nlist(n)
    rng = np.random.default_rng(seed)
    train = vectors[np.sort(rng.choice(n, min(n, TRAIN_PER_LIST * nlist), replace=False))]
    quantizer = faiss.IndexFlatIP(d)
    index = faiss.IndexIVFFlat(quantizer, d, nlist, faiss.METRIC_INNER_PRODUCT)
    index.cp.seed = seed
    index.train(train)
    del train
    trained = time.perf_counter()
    index.add(vectors)
    added = time.perf_counter()
    nprobe, recall = _calibrate_nprobe(index, vectors, rng)
    if nprobe is None:
        # no cluster structure to exploit (e.g. uniform noise): an exact scan is then faster and exact
        log.warning("IVF recall@10 is only %.3f at nprobe=nlist/%d on %d vectors; using an exact flat index",
                    recall, MAX_PROBED_FRACTION, n)
        del index
        flat = faiss.IndexFlatIP(d)
        flat.add(vectors)
        return VectorIndex(flat)
    index.nprobe = nprobe
    log.info("IVF index: %d vectors, nlist=%d, nprobe=%d, recall@10=%.3f; train %.1f s, add %.1f s, calibrate %.1f s",
             n, nlist, nprobe, recall, trained - started, added - trained, time.perf_counter() - added)
    return VectorIndex(index, recall=recall)


def _calibrate_nprobe(index, vectors: np.ndarray, rng: np.random.Generator, k: int = 10) -> tuple[int | None, float]:
    """The smallest nprobe whose recall@k against exact search reaches ``TARGET_RECALL`` (None: none does).

    The queries are rows of the data; each query's own row is left out of both result lists,
    or it would be a free hit at rank one and inflate the recall by about 1/k.
    """
    import faiss

    n = len(vectors)
    qids = np.sort(rng.choice(n, min(n, CALIBRATION_QUERIES), replace=False))
    queries = vectors[qids]
    _, exact = faiss.knn(queries, vectors, k + 1, metric=faiss.METRIC_INNER_PRODUCT)
    truth = _without_self(exact, qids, k)
    recall = 0.0
    for nprobe in nprobe_candidates(index.nlist):
        index.nprobe = nprobe
        _, found = index.search(queries, k + 1)
        found = _without_self(found, qids, k)
        recall = float(np.mean([len(set(t) & set(f)) / max(len(t), 1) for t, f in zip(truth, found)]))
        if recall >= TARGET_RECALL:
            return nprobe, recall
    return None, recall


def nprobe_candidates(nlist: int) -> list[int]:
    """``NPROBES``, then doubling, up to a quarter of the lists (past that an exact scan is as good)."""
    most = max(1, nlist // MAX_PROBED_FRACTION)
    candidates = [p for p in NPROBES if p <= most]
    more = 2 * NPROBES[-1]
    while more <= most:
        candidates.append(more)
        more *= 2
    return candidates or [most]


def _without_self(ids: np.ndarray, qids: np.ndarray, k: int) -> list[np.ndarray]:
    return [row[(row != q) & (row >= 0)][:k] for row, q in zip(ids, qids)]


def _normalized(x: np.ndarray) -> np.ndarray:
    x = np.ascontiguousarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    if np.all(np.abs(norms - 1) < 1e-5):  # already unit rows: skip the copy (1.5 GB at 1M x 384)
        return x
    return x / np.maximum(norms, 1e-12)
