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
    sims, ids = index.search(vectors[:2], k=10)
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
