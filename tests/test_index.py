"""The FAISS vector index (knowledge.index): cosine search, save/load round trip, clear errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from knowledge.errors import NanofactoryError
from knowledge.index import VectorIndex


@pytest.fixture
def vectors() -> np.ndarray:
    return np.random.default_rng(0).normal(size=(50, 12)).astype(np.float32)


def test_search_finds_each_vector_first_with_cosine_one(vectors):
    index = VectorIndex.build(vectors)
    assert len(index) == 50 and index.dim == 12
    sims, ids = index.search(vectors * 3.0, k=5)  # scale must not matter: cosine similarity
    assert sims.shape == ids.shape == (50, 5)
    np.testing.assert_array_equal(ids[:, 0], np.arange(50))
    np.testing.assert_allclose(sims[:, 0], 1.0, atol=1e-5)
    assert (np.diff(sims, axis=1) <= 1e-6).all()  # best first


def test_search_matches_brute_force_cosine(vectors):
    index = VectorIndex.build(vectors)
    query = np.random.default_rng(1).normal(size=12).astype(np.float32)  # 1-D query is accepted
    sims, ids = index.search(query, k=3)
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    cos = unit @ (query / np.linalg.norm(query))
    expected = np.argsort(-cos)[:3]
    np.testing.assert_array_equal(ids[0], expected)
    np.testing.assert_allclose(sims[0], cos[expected], atol=1e-5)


def test_k_larger_than_index_is_clipped(vectors):
    index = VectorIndex.build(vectors[:4])
    _, ids = index.search(vectors[:2], k=10)
    assert ids.shape == (2, 4)
    assert sorted(ids[0].tolist()) == [0, 1, 2, 3]


def test_save_load_round_trip(vectors, tmp_path: Path):
    index = VectorIndex.build(vectors)
    path = tmp_path / "run" / "index.faiss"  # parent folder does not exist yet
    index.save(path)
    assert path.is_file()
    assert [p.name for p in path.parent.iterdir()] == ["index.faiss"]  # no temp file left behind
    loaded = VectorIndex.load(path)
    assert len(loaded) == 50 and loaded.dim == 12
    queries = np.random.default_rng(2).normal(size=(7, 12)).astype(np.float32)
    s1, i1 = index.search(queries, k=6)
    s2, i2 = loaded.search(queries, k=6)
    np.testing.assert_array_equal(i1, i2)
    np.testing.assert_allclose(s1, s2, atol=1e-6)


def test_dimension_mismatch_raises(vectors):
    index = VectorIndex.build(vectors)
    with pytest.raises(NanofactoryError, match="13 dimensions.*12"):
        index.search(np.ones((2, 13), np.float32), k=1)


def test_load_missing_file_raises(tmp_path: Path):
    with pytest.raises(NanofactoryError, match="missing.faiss"):
        VectorIndex.load(tmp_path / "missing.faiss")


# ---------- automatic choice: exact flat below IVF_MIN, calibrated IVF above ----------

def clustered(n: int, d: int, k: int, spread: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Embedding-like data, a mixture of Gaussian clusters: (4000 rows to index, the rest as held-out queries)."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(k, d))
    rows = (centers[rng.integers(0, k, n)] + spread * rng.normal(size=(n, d))).astype(np.float32)
    return rows[:4000], rows[4000:]


def recall_at_10(index: VectorIndex, base: np.ndarray, queries: np.ndarray) -> float:
    unit = base / np.linalg.norm(base, axis=1, keepdims=True)
    q = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    truth = np.argsort(-(q @ unit.T), axis=1)[:, :10]
    _, found = index.search(queries, 10)
    return float(np.mean([len(set(t) & set(f)) / 10 for t, f in zip(truth, found)]))


@pytest.fixture
def small_ivf_min(monkeypatch):
    import knowledge.index as index_module

    monkeypatch.setattr(index_module, "IVF_MIN", 1000)
    return index_module


def test_small_pool_is_flat(vectors):
    assert VectorIndex.build(vectors).kind == "flat"


def test_ivf_above_threshold_reaches_recall_and_keeps_nprobe_through_save_load(small_ivf_min, tmp_path: Path):
    base, held_out = clustered(4300, d=16, k=40, spread=0.3)
    index = VectorIndex.build(base)
    assert index.kind.startswith("ivf nlist=64, nprobe=")  # 4 sqrt(4000) ~ 253, capped so each list holds >= 39
    assert index.recall is not None and index.recall >= 0.95
    assert recall_at_10(index, base, held_out) >= 0.95

    path = tmp_path / "index.faiss"
    index.save(path)
    assert [p.name for p in tmp_path.iterdir()] == ["index.faiss"]  # nprobe lives in the FAISS file itself
    loaded = VectorIndex.load(path)
    assert loaded.kind == index.kind
    s1, i1 = index.search(held_out, 10)
    s2, i2 = loaded.search(held_out, 10)
    np.testing.assert_array_equal(i1, i2)
    np.testing.assert_allclose(s1, s2, atol=1e-6)


def test_nprobe_is_the_smallest_candidate_that_reaches_the_target(small_ivf_min):
    import faiss

    base, held_out = clustered(4300, d=32, k=100, spread=1.1)  # overlapping clusters: 8 lists are not enough
    index = VectorIndex.build(base)
    ivf = faiss.extract_index_ivf(index._index)
    assert index.kind == "ivf nlist=64, nprobe=16"
    assert recall_at_10(index, base, held_out) >= 0.95
    ivf.nprobe = 8  # the candidate before it really falls short on queries it never saw
    assert recall_at_10(index, base, held_out) < 0.95


def test_structureless_data_falls_back_to_flat(small_ivf_min):
    noise = np.random.default_rng(4).normal(size=(3000, 64)).astype(np.float32)  # no clusters: IVF cannot help
    index = VectorIndex.build(noise)
    assert index.kind == "flat"
    assert recall_at_10(index, noise, noise[:50] + 0.1) == 1.0


def test_nlist_follows_pool_size():
    from knowledge.index import ivf_nlist

    assert ivf_nlist(1_000_000) == 4096  # 4 sqrt(N) = 4000, nearest power of two
    assert ivf_nlist(100_000) == 1024
    assert all(n >= 39 * ivf_nlist(n) for n in (500, 3000, 50_000))
