"""The Teacher contract: embed images; score images against class descriptions.

A teacher is a large pretrained model that knows much more than the student.
It never runs on the microcontroller: it labels and selects the data.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from knowledge.errors import NanofactoryError


class TeacherConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field("efficientnet-lite", description="registry name; see `list_teachers()`")
    model: str | None = Field(None, description="hub id or local path; None = the entry's packaged default")
    image_size: int | None = Field(None, ge=16, le=1024, description="input resolution; None = the entry's default")
    batch_size: int = Field(256, ge=1)
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="where the teacher runs; auto: a GPU when "
                                                   "one is visible")


def torch_threads() -> int:
    return max(1, os.cpu_count() or 1)


def torch_device(config: TeacherConfig) -> str:
    """'cuda' or 'cpu' for ``config.device``; a GPU asked for and not visible is one sentence."""
    import torch

    if config.device == "cuda" and not torch.cuda.is_available():
        raise NanofactoryError("The teacher was asked to run on a GPU but none is visible; use device 'auto' or "
                               "'cpu' (--teacher-device).")
    return "cuda" if config.device == "cuda" or (config.device == "auto" and torch.cuda.is_available()) else "cpu"


class Teacher(ABC):
    """Constructors only store the config; ``load()`` reads weights (never from the network by itself)."""

    def __init__(self, config: TeacherConfig):
        self.config = config

    @property
    @abstractmethod
    def cache_key(self) -> str:
        """Identifies the weights and preprocessing, so cached embeddings are reused only when valid."""

    @abstractmethod
    def load(self) -> None:
        """Load the weights; idempotent."""

    @property
    def embedding_groups(self) -> tuple[int, ...] | None:
        """Widths of the feature groups an embedding concatenates (weighed equally by the labeling
        projection); None: one group."""
        return None

    @abstractmethod
    def embed(self, images: np.ndarray) -> np.ndarray:
        """uint8 images (N, H, W, C with C = 1 or 3) -> float32 embeddings (N, D)."""

    @abstractmethod
    def class_scores(self, embeddings: np.ndarray, prompts: list[str]) -> np.ndarray:
        """Zero-shot: (N, D) embeddings x C class descriptions -> (N, C) scores in [0, 1], rows sum <= 1."""
