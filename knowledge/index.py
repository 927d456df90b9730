"""A FAISS vector index over teacher embeddings, saved in the run and reloadable."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from knowledge.errors import NanofactoryError
from knowledge.io import atomic_path


class VectorIndex:
    """Cosine-similarity search (inner product over L2-normalized vectors)."""

    def __init__(self, index=None):
        self._index = index

    @classmethod
    def build(cls, vectors: np.ndarray) -> "VectorIndex":
        import faiss

        vectors = _normalized(vectors)
        index = faiss.IndexFlatIP(vectors.shape[1])
        index.add(vectors)
        return cls(index)

    def __len__(self) -> int:
        return 0 if self._index is None else self._index.ntotal

    @property
    def dim(self) -> int:
        return self._index.d

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(similarities, ids), each (Q, k), best first."""
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
    def load(cls, path: Path) -> "VectorIndex":
        import faiss

        if not Path(path).is_file():
            raise NanofactoryError(f"Index file {path} does not exist; rebuild the run's data stage.")
        return cls(faiss.read_index(str(path)))


def _normalized(x: np.ndarray) -> np.ndarray:
    x = np.ascontiguousarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
