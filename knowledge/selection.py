"""Selection over the pool's embeddings: what to keep, what to label next, what to contrast.

Pure functions over (N, d) embedding rows (the run's projected, L2-normalized teacher
embeddings; rows are re-normalized here, so any scale works). Neighbour search goes through
FAISS, never an N x N matrix: exact below ``EXACT_MAX`` rows, an IVF index above it, so that
60,000 x 128-d runs in a few seconds on two cores.

* ``near_duplicates``: groups of (near-)identical samples, one kept per group.
* ``k_center_greedy``: the core-set rule, points that cover the pool.
* ``balance``: at most ``per_class_cap`` per label, chosen to cover each class.
* ``hard_negatives``: the "other" samples that look most like each named class.
* ``uncertainty_diversity``: the active-learning batch, uncertain and not redundant.

Everything is seeded and deterministic.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from knowledge.errors import NanofactoryError

log = logging.getLogger(__name__)

EXACT_MAX = 20_000  # exact all-pairs k-NN costs N^2 d: 0.7 s at 20k x 128-d on 2 cores, 6 s at 60k
# IVF lists scanned per query above EXACT_MAX. Measured on 60k x 128-d with 3,000 planted pairs: every pair at
# cosine >= 0.97 found, 99.9 % of those at >= 0.9 even in structureless noise; 1-2 s in all
NEAR_NPROBE = 8
CANDIDATE_FACTOR = 5  # uncertainty_diversity diversifies among the 5 x budget most uncertain samples


@dataclass
class Duplicates:
    """The result of ``near_duplicates``."""

    keep: np.ndarray  # sorted indices of the samples kept, one per group
    group: np.ndarray  # (N,) for every sample, the index of its group's kept sample
    removed: int  # samples dropped (N - len(keep))

    def removed_per_group(self) -> dict[int, int]:
        """Kept index -> number of samples it stands for that were removed, for groups that removed any."""
        sizes = np.bincount(self.group, minlength=len(self.group))[self.keep]
        merged = sizes > 1
        return dict(zip(self.keep[merged].tolist(), (sizes[merged] - 1).tolist()))

    def examples(self, limit: int = 5) -> list[tuple[int, list[int]]]:
        """The ``limit`` largest groups as (kept index, removed indices), largest first, for reports."""
        largest = sorted(self.removed_per_group().items(), key=lambda kv: (-kv[1], kv[0]))[:limit]
        return [(k, [int(i) for i in np.flatnonzero(self.group == k) if i != k]) for k, _ in largest]


def near_duplicates(vectors: np.ndarray, threshold: float = 0.97, prefer: np.ndarray | None = None,
                    k: int = 16) -> Duplicates:
    """Group samples whose cosine similarity is >= ``threshold``; keep one per group.

    Groups are the connected components of the graph linking each sample to those of its
    ``k`` nearest neighbours at or above the threshold, so similarity chains (a~b, b~c) join
    one group even when a and c are further apart. Identical rows are grouped by exact match
    first, so they always end up together however many copies there are. The kept sample is
    the one with the highest ``prefer`` score (e.g. label confidence), ties and ``prefer=None``
    going to the lowest index.
    """
    x = _rows(vectors)
    n = len(x)
    if not -1.0 <= threshold <= 1.0:
        raise NanofactoryError(f"Duplicate threshold {threshold} is not a cosine similarity; use a value in [-1, 1].")
    score = np.zeros(n) if prefer is None else _per_row(prefer, n, "prefer scores").astype(np.float64)
    if n == 0:
        return Duplicates(keep=np.zeros(0, np.int64), group=np.zeros(0, np.int64), removed=0)
    # exact copies first, by their bytes: then the neighbour search only sees distinct rows
    _, first, inverse = np.unique(x.view(np.dtype((np.void, x.strides[0]))).ravel(),
                                  return_index=True, return_inverse=True)
    component = inverse.ravel()
    distinct = x[first]
    if len(distinct) > 1:
        sims, ids = _knn(distinct, min(k + 1, len(distinct)))
        linked = (sims >= threshold) & (ids >= 0) & (ids != np.arange(len(distinct))[:, None])
        rows, places = np.nonzero(linked)
        cols = ids[rows, places]
        component = _components(len(distinct), rows, cols)[inverse.ravel()]
    # per component, the sample with the highest score, then the lowest index
    order = np.lexsort((np.arange(n), -score, component))
    leaders = order[np.r_[True, component[order][1:] != component[order][:-1]]]
    keep_of_component = np.empty(component.max() + 1, np.int64)
    keep_of_component[component[leaders]] = leaders
    group = keep_of_component[component]
    keep = np.sort(leaders).astype(np.int64)
    log.info("near-duplicates at cosine >= %.3f: %d of %d samples removed", threshold, n - len(keep), n)
    return Duplicates(keep=keep, group=group, removed=int(n - len(keep)))


def k_center_greedy(vectors: np.ndarray, budget: int, seed: int = 0,
                    selected: Sequence[int] | np.ndarray | None = None) -> np.ndarray:
    """Greedy k-center (core-set, Sener & Savarese 2018): each new point is the one furthest from all chosen.

    Distances are Euclidean between the rows as given (on unit rows, the same order as cosine).
    Starts from ``selected`` (indices already chosen) when given, else from one seeded random
    point, which then is the first index returned. Returns only the newly chosen indices, in
    order of choice; at most the number of unchosen rows. O(N * budget * d) time, O(N) memory:
    a running minimum distance to the chosen set, updated by one matrix-vector product per pick.
    """
    x = _rows(vectors, normalize=False)
    n = len(x)
    if budget < 0:
        raise NanofactoryError(f"Selection budget {budget} is negative; ask for 0 or more samples.")
    chosen = _indices(selected, n, "selected")
    budget = min(int(budget), n - len(np.unique(chosen)))
    picks: list[int] = []
    if budget <= 0:
        return np.zeros(0, np.int64)
    sq = np.einsum("ij,ij->i", x, x)
    if len(chosen):
        min_dist = _min_sq_distance(x, sq, chosen)
    else:
        first = int(np.random.default_rng(seed).integers(n))
        picks.append(first)
        min_dist = np.maximum(sq + sq[first] - 2 * (x @ x[first]), 0)
    taken = np.zeros(n, bool)
    taken[chosen] = True
    taken[picks] = True
    min_dist[taken] = -1.0  # never picked again, even once every distance is 0 (duplicates)
    from threadpoolctl import threadpool_limits  # scikit-learn's dependency

    # one matrix-vector product per pick is too small to split across threads: threaded BLAS only adds
    # synchronization; on a busy 2-core machine it made balance() at 60k x 128-d take 33 s instead of ~2 s
    with threadpool_limits(1, user_api="blas"):
        while len(picks) < budget:
            nxt = int(np.argmax(min_dist))  # ties: lowest index
            picks.append(nxt)
            np.minimum(min_dist, np.maximum(sq + sq[nxt] - 2 * (x @ x[nxt]), 0), out=min_dist)
            min_dist[nxt] = -1.0
    return np.asarray(picks, np.int64)


def balance(labels: np.ndarray, per_class_cap: int, vectors: np.ndarray | None = None, seed: int = 0) -> np.ndarray:
    """Indices keeping at most ``per_class_cap`` samples of each label value, sorted.

    A class over the cap keeps a covering subset (``k_center_greedy`` on its ``vectors``), or a
    seeded random one when ``vectors`` is None. Every distinct label value counts as a class,
    -1 included: drop unlabeled samples before calling if they should not be kept.
    """
    labels = np.asarray(labels).ravel()
    if per_class_cap < 0:
        raise NanofactoryError(f"Per-class cap {per_class_cap} is negative; use 0 or more.")
    if vectors is not None and len(_rows(vectors, normalize=False)) != len(labels):
        raise NanofactoryError(f"{len(vectors)} vectors were given for {len(labels)} labels; pass one row per label.")
    rng = np.random.default_rng(seed)
    kept = []
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        if len(members) <= per_class_cap:
            kept.append(members)
        elif vectors is None:
            kept.append(rng.choice(members, per_class_cap, replace=False))
        else:
            kept.append(members[k_center_greedy(np.asarray(vectors)[members], per_class_cap, seed=seed)])
    return np.sort(np.concatenate(kept)).astype(np.int64) if kept else np.zeros(0, np.int64)


def hard_negatives(vectors: np.ndarray, labels: np.ndarray, other_label: int, per_class: int,
                   exclude: Sequence[int] | np.ndarray | None = None, neighbours: int = 3) -> dict[int, np.ndarray]:
    """For each named class, the ``per_class`` "other" samples most similar to it, most similar first.

    Similarity of an "other" sample to class c is its mean cosine similarity to its
    ``neighbours`` nearest members of c: close to the members themselves rather than to a
    centroid (a class is often several modes, and its centroid lies between them), and
    averaged over a few so one mislabeled member does not decide. A sample may be a hard
    negative of several classes. ``exclude`` indices are never returned.
    """
    import faiss

    x = _rows(vectors)
    labels = _per_row(labels, len(x), "labels")
    if per_class < 0:
        raise NanofactoryError(f"Hard negatives per class {per_class} is negative; use 0 or more.")
    candidates = np.flatnonzero(labels == other_label)
    candidates = np.setdiff1d(candidates, _indices(exclude, len(x), "exclude"))
    queries = x[candidates]
    result: dict[int, np.ndarray] = {}
    for c in np.unique(labels[labels != other_label]):
        members = np.flatnonzero(labels == c)
        if len(candidates) == 0 or per_class == 0:
            result[int(c)] = np.zeros(0, np.int64)
            continue
        index = faiss.IndexFlatIP(x.shape[1])  # exact: summed over classes, |other| x |named| <= N^2 / 4 pairs
        index.add(x[members])
        sims, _ = index.search(queries, min(neighbours, len(members)))
        score = sims.mean(1)
        order = np.lexsort((candidates, -score))[:per_class]
        result[int(c)] = candidates[order].astype(np.int64)
    return result


def uncertainty_diversity(probs: np.ndarray, vectors: np.ndarray, budget: int,
                          exclude: Sequence[int] | np.ndarray | None = None, seed: int = 0) -> np.ndarray:
    """The active-learning query: ``budget`` samples to label next, uncertain and mutually diverse.

    Uncertainty is the margin between the two most probable labels (small margin = the
    labeler hesitates between two classes; margin sampling, Scheffer et al. 2001). The most
    uncertain samples are often near-copies of one confusing mode, so labeling the top
    ``budget`` would spend many labels on one question. Instead the ``CANDIDATE_FACTOR x
    budget`` most uncertain unlabeled samples are the candidates, and ``k_center_greedy``
    (core-set, Sener & Savarese 2018) picks ``budget`` of them that cover the candidates,
    starting from the most uncertain one: the "filter by uncertainty, then diversify" batch of
    Zhdanov 2019 (Diverse mini-batch Active Learning), with k-center in place of k-means and
    a cheap stand-in for BADGE's gradient embeddings (Ash et al. 2020).

    ``exclude`` (already labeled indices) are never returned. ``seed`` breaks ties between
    equally uncertain samples. Returns indices in order of choice, the most uncertain first.
    """
    probs = np.asarray(probs, np.float64)
    x = _rows(vectors, normalize=False)
    if probs.ndim != 2 or len(probs) != len(x):
        raise NanofactoryError(f"Label distributions of shape {probs.shape} do not match {len(x)} vectors; "
                               "pass one (N, K) row per vector.")
    if budget < 0:
        raise NanofactoryError(f"Selection budget {budget} is negative; ask for 0 or more samples.")
    top2 = -np.sort(-probs, axis=1)[:, :2] if probs.shape[1] >= 2 else np.c_[probs, np.zeros(len(probs))]
    margin = top2[:, 0] - top2[:, 1]
    allowed = np.setdiff1d(np.arange(len(x)), _indices(exclude, len(x), "exclude"))
    if budget == 0 or len(allowed) == 0:
        return np.zeros(0, np.int64)
    tiebreak = np.random.default_rng(seed).permutation(len(allowed))
    ranked = allowed[np.lexsort((tiebreak, margin[allowed]))]
    candidates = ranked[:max(CANDIDATE_FACTOR * budget, budget)]
    rest = k_center_greedy(x[candidates], budget - 1, seed=seed, selected=[0])
    return candidates[np.r_[0, rest]].astype(np.int64)


def _knn(x: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(similarities, ids) of each row's ``k`` nearest rows (itself included): exact up to EXACT_MAX rows."""
    import faiss

    from knowledge.index import TRAIN_PER_LIST, ivf_nlist

    n, d = x.shape
    if n <= EXACT_MAX:
        index = faiss.IndexFlatIP(d)
    else:
        # recall@10 on arbitrary neighbours does not matter here: close pairs (the ones asked for) land in
        # the same or an adjacent list, so a small fixed nprobe finds them without VectorIndex's calibration
        nlist = max(1, ivf_nlist(n) // 2)  # ~2 sqrt(N) lists: k-means training dominates the time, and halves with nlist
        index = faiss.IndexIVFFlat(faiss.IndexFlatIP(d), d, nlist, faiss.METRIC_INNER_PRODUCT)
        index.cp.seed = 0
        rng = np.random.default_rng(0)
        index.train(x[np.sort(rng.choice(n, min(n, TRAIN_PER_LIST * nlist), replace=False))])
        index.nprobe = NEAR_NPROBE
    index.add(x)
    return index.search(x, k)


def _components(n: int, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Connected-component id per node of the undirected graph with edges (rows[i], cols[i])."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    graph = coo_matrix((np.ones(len(rows), np.int8), (rows, cols)), shape=(n, n))
    return connected_components(graph, directed=False)[1]


def _min_sq_distance(x: np.ndarray, sq: np.ndarray, chosen: np.ndarray) -> np.ndarray:
    """Squared distance from each row to its nearest chosen row, by FAISS exact search (no N x |chosen| matrix)."""
    import faiss

    centers = x[np.unique(chosen)]
    # the nearest center maximizes x.c - |c|^2 / 2: one more coordinate (1 in x, -|c|^2 / 2 in c) makes it an inner product
    aug = np.c_[centers, -0.5 * np.einsum("ij,ij->i", centers, centers)].astype(np.float32)
    index = faiss.IndexFlatIP(aug.shape[1])
    index.add(aug)
    best, _ = index.search(np.c_[x, np.ones(len(x), np.float32)].astype(np.float32), 1)
    return np.maximum(sq - 2 * best[:, 0], 0).astype(np.float32)


def _rows(vectors: np.ndarray, normalize: bool = True) -> np.ndarray:
    x = np.ascontiguousarray(vectors, dtype=np.float32)
    if x.ndim != 2:
        raise NanofactoryError(f"Embeddings must be a 2-D array (N, d); got shape {x.shape}.")
    if normalize:
        x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    return x


def _per_row(values, n: int, what: str) -> np.ndarray:
    values = np.asarray(values).ravel()
    if len(values) != n:
        raise NanofactoryError(f"{len(values)} {what} were given for {n} vectors; pass one per vector.")
    return values


def _indices(indices, n: int, what: str) -> np.ndarray:
    out = np.zeros(0, np.int64) if indices is None else np.asarray(indices, np.int64).ravel()
    if len(out) and (out.min() < 0 or out.max() >= n):
        raise NanofactoryError(f"The {what} indices must lie in [0, {n}); got {out.min()}..{out.max()}.")
    return out
