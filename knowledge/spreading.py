"""Label spreading over the pool's k-NN graph in the teacher's (projected) space.

Once a person has answered, ``knowledge.labeling`` spreads the self-training head's labels over
each image's nearest pool neighbours, the answers held fixed (Zhou et al. 2004). The graph comes
from the run's FAISS index (``knowledge.index``), so it is exact on small pools and IVF on large
ones, and a run saves it for the review queue's re-labeling.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SPREAD_KERNEL = 0.05  # a neighbour's weight: exp(cosine / 0.05), normalized over the row's neighbours
SPREAD_STEPS = 30  # iterations of the spreading; (0.9)^30 = 0.04 of the start is left to propagate
GRAPH_CHUNK = 65536  # rows searched or spread at a time: memory stays flat in the pool size


@dataclass
class NeighbourGraph:
    """Every pool row's ``k`` nearest other rows in the projected teacher space, with weights that sum to 1."""

    rows: np.ndarray  # (N, k) int64
    weights: np.ndarray  # (N, k) float32

    def save(self, path) -> None:
        from knowledge.io import write_npz_atomic

        write_npz_atomic(path, rows=self.rows, weights=self.weights)

    @classmethod
    def load(cls, path) -> NeighbourGraph:
        with np.load(path) as z:
            return cls(rows=z["rows"], weights=z["weights"])


def neighbour_graph(emb: np.ndarray, k: int, index=None) -> NeighbourGraph | None:
    """The k-NN graph of ``emb`` (projected, unit rows) through ``index`` (a ``VectorIndex`` of the same
    rows: IVF on large pools) or an exact one; None when the pool is too small to have neighbours."""
    from knowledge.index import VectorIndex

    n = len(emb)
    k = min(k, n - 1)
    if k < 1:
        return None
    index = index or VectorIndex.build(emb, ivf_min=n + 1)
    rows, weights = np.zeros((n, k), np.int64), np.zeros((n, k), np.float32)
    for start in range(0, n, GRAPH_CHUNK):
        sims, ids = index.search(emb[start : start + GRAPH_CHUNK], k + 1)
        own = np.arange(start, start + len(ids))[:, None]
        unusable = (ids == own) | (ids < 0)  # the row itself, or a place an IVF search left empty
        order = np.argsort(unusable, axis=1, kind="stable")[:, :k]  # the best k usable, in rank order
        ids, sims = np.take_along_axis(ids, order, 1), np.take_along_axis(sims, order, 1)
        unusable = np.take_along_axis(unusable, order, 1)
        sims = np.where(unusable, -np.inf, sims)
        with np.errstate(invalid="ignore"):  # a row with no usable neighbour: -inf - -inf
            w = np.exp((sims - sims.max(1, keepdims=True)) / SPREAD_KERNEL)
        w = np.where(np.isfinite(w), w, 0.0)
        lonely = w.sum(1) == 0  # no usable neighbour: the row keeps its own label
        w[lonely, 0], ids[lonely] = 1.0, own[lonely]
        rows[start : start + len(ids)] = np.where(unusable & ~lonely[:, None], own, ids)
        weights[start : start + len(ids)] = w / w.sum(1, keepdims=True)
    return NeighbourGraph(rows, weights)


def spread_labels(probs: np.ndarray, graph: NeighbourGraph, alpha: float, fixed: np.ndarray | None = None,
                  steps: int = SPREAD_STEPS, keep_counts: bool = False) -> np.ndarray:
    """Label spreading (Zhou et al. 2004, "Learning with local and global consistency"): iterate
    F <- alpha * W F + (1 - alpha) * Y from the labels Y, W the graph's row-normalized weights;
    rows in ``fixed`` (a person's answers) keep their label throughout. With ``keep_counts`` each
    class then keeps as many images as Y gave it (``match_counts``): the neighbourhoods decide
    which images a class gets, not how many.

    A linear head on the teacher's features draws one boundary per class; the neighbourhoods
    follow the pool's own shape. Spreading also hands a minority class's edges to the majority
    around it (on the demo, shirts to "other": the student finds 7 % of shirts instead of 11 %,
    more surely); keeping the counts holds the minority's share but, in the active-learning
    benchmark, gave back most of the labels' gain (README, "Asking a person only what matters").
    """
    y = np.asarray(probs, np.float32)
    f = y.copy()
    for _ in range(steps):
        nxt = np.empty_like(f)
        for start in range(0, len(f), GRAPH_CHUNK):
            part = slice(start, start + GRAPH_CHUNK)
            nxt[part] = alpha * np.einsum("nk,nkc->nc", graph.weights[part], f[graph.rows[part]]) + (1 - alpha) * y[part]
        if fixed is not None and len(fixed):
            nxt[fixed] = y[fixed]
        f = nxt
    f = f / np.maximum(f.sum(1, keepdims=True), 1e-12)
    if keep_counts:
        f = match_counts(f, np.bincount(y.argmax(1), minlength=y.shape[1]))
        if fixed is not None and len(fixed):
            f[fixed] = y[fixed]
    return f


COUNT_STEPS = 200  # iterations of the per-class bias in match_counts
COUNT_RATE = 0.05  # its step, in log counts


def match_counts(probs: np.ndarray, target: np.ndarray) -> np.ndarray:
    """``probs`` re-weighted per class (one factor each, then rows renormalized) so that each class is
    the most probable label of about ``target[c]`` rows: a prior shift fitted on the argmax counts."""
    logp = np.log(np.maximum(np.asarray(probs, np.float64), 1e-9))
    bias, target = np.zeros(logp.shape[1]), np.maximum(np.asarray(target, np.float64), 1)
    for _ in range(COUNT_STEPS):
        counts = np.maximum(np.bincount((logp + bias).argmax(1), minlength=len(bias)), 1)
        bias -= COUNT_RATE * np.log(counts / target)
    out = np.exp(logp + bias - (logp + bias).max(1, keepdims=True))
    return (out / out.sum(1, keepdims=True)).astype(np.float32)
