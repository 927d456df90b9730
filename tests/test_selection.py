"""Selection over embeddings (knowledge.selection): dedup, core-set, balance, hard negatives, active learning."""

from __future__ import annotations

import numpy as np
import pytest

from knowledge import selection
from knowledge.errors import NanofactoryError
from knowledge.selection import (
    balance,
    hard_negatives,
    k_center_greedy,
    near_duplicates,
    uncertainty_diversity,
)


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def rotate_towards(v: np.ndarray, cos: float, rng: np.random.Generator) -> np.ndarray:
    """A unit vector at exactly cosine ``cos`` from unit vector ``v``."""
    w = rng.normal(size=v.shape)
    w -= (w @ v) * v
    return unit(cos * v + np.sqrt(1 - cos**2) * unit(w)).astype(np.float32)


def clusters(rng: np.random.Generator, k: int, per: int, d: int = 16, spread: float = 0.05):
    """``k`` well-separated tight clusters: (vectors, cluster id per row)."""
    centers = np.eye(d)[:k] * 10
    ids = np.repeat(np.arange(k), per)
    return (centers[ids] + spread * rng.normal(size=(k * per, d))).astype(np.float32), ids


# ---------- near_duplicates ----------

@pytest.fixture
def dup_pool():
    """8 distinct directions (pairwise cosine well below 0.9), then planted copies."""
    rng = np.random.default_rng(0)
    base = unit(rng.normal(size=(8, 64)))
    rows = [*base,
            base[0], base[0] * 3.0,                      # 8, 9: exact copy, and a scaled copy (cosine 1)
            rotate_towards(base[1], 0.99, rng),          # 10: near copy of 1
            rotate_towards(base[2], 0.90, rng)]          # 11: similar to 2, but below the threshold
    return np.stack(rows).astype(np.float32)


def test_exact_and_near_duplicates_are_grouped_distinct_points_are_not(dup_pool):
    dup = near_duplicates(dup_pool, threshold=0.97)
    assert dup.group[8] == dup.group[9] == dup.group[0] == 0
    assert dup.group[10] == dup.group[1] == 1
    assert dup.group[11] == 11 and dup.group[2] == 2  # 0.90 < 0.97: kept apart
    assert dup.keep.tolist() == [0, 1, 2, 3, 4, 5, 6, 7, 11]
    assert dup.removed == 3
    assert dup.removed_per_group() == {0: 2, 1: 1}
    assert dup.examples(limit=1) == [(0, [8, 9])]
    # a lower threshold does join 2 and 11
    assert near_duplicates(dup_pool, threshold=0.85).group[11] == 2


def test_prefer_decides_which_copy_is_kept(dup_pool):
    prefer = np.zeros(len(dup_pool))
    prefer[9] = 0.9  # e.g. the most confident label of the group
    dup = near_duplicates(dup_pool, threshold=0.97, prefer=prefer)
    assert dup.group[0] == dup.group[8] == dup.group[9] == 9
    assert 9 in dup.keep and 0 not in dup.keep and 8 not in dup.keep


def test_many_identical_copies_form_one_group_beyond_k():
    rng = np.random.default_rng(1)
    others = unit(rng.normal(size=(30, 32)))
    x = np.concatenate([others, np.repeat(others[:1], 40, axis=0)])  # 41 copies of row 0, k is only 4
    dup = near_duplicates(x, threshold=0.97, k=4)
    assert (dup.group[30:] == 0).all() and dup.removed == 40
    assert dup.keep.tolist() == list(range(30))


def test_near_duplicates_through_the_ivf_path(monkeypatch):
    monkeypatch.setattr(selection, "EXACT_MAX", 100)  # force the approximate search on 2,000 rows
    rng = np.random.default_rng(2)
    x = unit(rng.normal(size=(2000, 32)) + 2 * np.eye(32)[rng.integers(0, 32, 2000)])
    src = rng.choice(1800, 100, replace=False)
    x[1800:1900] = np.stack([rotate_towards(x[i], 0.98, rng) for i in src])
    x[1900:] = x[src]
    dup = near_duplicates(x, threshold=0.97)
    assert (dup.group[1800:1900] == dup.group[src]).all()
    assert (dup.group[1900:] == dup.group[src]).all()
    assert dup.removed == 200  # the random rows themselves are far below 0.97 from each other


# ---------- k_center_greedy ----------

def test_k_center_covers_every_cluster_before_repeating_one():
    x, ids = clusters(np.random.default_rng(3), k=6, per=25)
    picks = k_center_greedy(x, 6, seed=0)
    assert sorted(ids[picks].tolist()) == [0, 1, 2, 3, 4, 5]
    np.testing.assert_array_equal(picks, k_center_greedy(x, 6, seed=0))  # deterministic
    # the second pick is the point furthest from the first
    assert picks[1] == np.argmax(((x - x[picks[0]]) ** 2).sum(1))


def test_k_center_starts_from_selected_and_returns_only_new_points():
    x, ids = clusters(np.random.default_rng(4), k=5, per=20)
    selected = np.flatnonzero(ids < 2)
    picks = k_center_greedy(x, 3, selected=selected)
    assert sorted(ids[picks].tolist()) == [2, 3, 4]
    assert not set(picks.tolist()) & set(selected.tolist())


def test_k_center_budget_beyond_pool_returns_each_point_once():
    x = np.random.default_rng(5).normal(size=(12, 4)).astype(np.float32)
    picks = k_center_greedy(x, 50, selected=[0, 1])
    assert sorted(picks.tolist()) == list(range(2, 12))
    assert k_center_greedy(x, 0).size == 0
    with pytest.raises(NanofactoryError, match="negative"):
        k_center_greedy(x, -1)


# ---------- balance ----------

def test_balance_caps_each_class_and_keeps_small_ones_whole():
    labels = np.array([0] * 50 + [1] * 10 + [2] * 3)
    kept = balance(labels, per_class_cap=8, seed=0)
    assert np.bincount(labels[kept]).tolist() == [8, 8, 3]
    assert (np.diff(kept) > 0).all()
    np.testing.assert_array_equal(kept, balance(labels, 8, seed=0))


def test_balance_with_vectors_keeps_every_mode_of_a_large_class():
    rng = np.random.default_rng(6)
    x, modes = clusters(rng, k=4, per=30)  # class 0 is four modes of 30 samples
    labels = np.zeros(len(x), int)
    kept = balance(labels, per_class_cap=4, vectors=x)
    assert sorted(modes[kept].tolist()) == [0, 1, 2, 3]


# ---------- hard_negatives ----------

def test_hard_negatives_are_the_nearest_other_samples():
    rng = np.random.default_rng(7)
    a, b = np.eye(16)[0], np.eye(16)[1]
    class_a = [rotate_towards(a, 0.98, rng) for _ in range(5)]
    class_b = [rotate_towards(b, 0.98, rng) for _ in range(5)]
    near_a = [rotate_towards(a, c, rng) for c in (0.95, 0.9, 0.7)]  # other, close to a: indices 10, 11, 12
    far = [np.eye(16)[5 + i] for i in range(6)]  # other, unrelated: 13..18
    near_b = [rotate_towards(b, 0.93, rng)]  # other, close to b: index 19
    x = np.stack(class_a + class_b + near_a + far + near_b).astype(np.float32)
    labels = np.array([0] * 5 + [1] * 5 + [2] * 10)
    negs = hard_negatives(x, labels, other_label=2, per_class=2)
    assert set(negs) == {0, 1}
    assert negs[0].tolist() == [10, 11]
    assert negs[1][0] == 19
    assert hard_negatives(x, labels, other_label=2, per_class=2, exclude=[10])[0].tolist() == [11, 12]
    # the score is the mean similarity to the 3 nearest class members: check against brute force
    sims = unit(x) @ unit(x[:5]).T
    expected = np.flatnonzero(labels == 2)[np.argsort(-np.sort(sims[labels == 2], 1)[:, -3:].mean(1))[:4]]
    assert hard_negatives(x, labels, other_label=2, per_class=4)[0].tolist() == expected.tolist()


# ---------- uncertainty_diversity ----------

def test_uncertainty_diversity_prefers_uncertain_spread_samples_and_skips_labeled():
    rng = np.random.default_rng(8)
    x, mode = clusters(rng, k=4, per=25)
    margin = np.full(len(x), 0.9)  # confident
    margin[:12] = rng.uniform(0.00, 0.02, 12)  # the most uncertain: 12 samples, all in mode 0
    margin[mode == 1] = rng.uniform(0.03, 0.05, 25)  # also uncertain, in mode 1
    probs = np.c_[(1 + margin) / 2, (1 - margin) / 2]
    most = int(np.argmin(margin))
    picks = uncertainty_diversity(probs, x, budget=4, exclude=[most])
    assert len(picks) == 4 and len(set(picks.tolist())) == 4
    assert most not in picks
    assert picks[0] == np.argsort(margin)[1]  # the most uncertain unlabeled sample comes first
    assert set(mode[picks].tolist()) <= {0, 1}  # never a confident sample
    top4_by_margin = np.argsort(margin)[1:5]
    assert set(mode[top4_by_margin].tolist()) == {0}  # plain uncertainty sampling stays in one mode ...
    assert set(mode[picks].tolist()) == {0, 1}  # ... the diverse batch does not
    np.testing.assert_array_equal(picks, uncertainty_diversity(probs, x, budget=4, exclude=[most]))


def test_uncertainty_diversity_never_returns_labeled_even_when_budget_exceeds_pool():
    rng = np.random.default_rng(9)
    x = rng.normal(size=(20, 8)).astype(np.float32)
    probs = rng.dirichlet(np.ones(3), 20)
    labeled = np.arange(0, 20, 2)
    picks = uncertainty_diversity(probs, x, budget=50, exclude=labeled)
    assert sorted(picks.tolist()) == list(range(1, 20, 2))
    with pytest.raises(NanofactoryError, match="do not match"):
        uncertainty_diversity(probs[:5], x, budget=2)
