"""The generator contract: a request for ``count`` samples of one class, answered with files plus provenance.

    generator = create_generator(SpeechConfig())
    result = generator.generate(GenerateRequest(class_name="yes", count=100, seed=0), out_dir)
    for f in result.files: f.path, f.provenance

Constructors only store the config. ``check()`` says cheaply whether the generator can run
here (a missing binary, a missing model) by raising ``GeneratorUnavailable`` with one sentence;
``load()`` reads weights, never from the network.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from knowledge.errors import NanofactoryError

log = logging.getLogger(__name__)


class GeneratorUnavailable(NanofactoryError):
    """The generator cannot run on this machine (no pipeline, no TTS engine); the message says why and what to do."""


class GenerateRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    class_name: str = Field(min_length=1, description="the class (or keyword) the samples must show (or say)")
    description: str = Field("", description="what it looks like, or the words to speak; defaults to the class name")
    negatives: list[str] = Field(default_factory=list, description="things the samples must not look like")
    count: int = Field(ge=1, le=100_000)
    seed: int = 0

    @field_validator("class_name")
    @classmethod
    def _strip(cls, v: str) -> str:
        v = v.strip()
        if not v:
            raise ValueError("the class name is empty")
        return v

    @property
    def text(self) -> str:
        return self.description.strip() or self.class_name


@dataclass
class GeneratedFile:
    path: Path
    provenance: dict  # JSON-able: generator, model, prompt or voice, seed, ...


@dataclass
class GenerateResult:
    generator: str
    request: GenerateRequest
    files: list[GeneratedFile] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def paths(self) -> list[Path]:
        return [f.path for f in self.files]


class Generator(ABC):
    """One kind of synthetic data. Subclasses set ``name`` and ``modality`` and register themselves."""

    name: ClassVar[str]
    modality: ClassVar[Literal["image", "audio"]]

    def __init__(self, config: BaseModel):
        self.config = config

    def check(self) -> None:
        """Raise ``GeneratorUnavailable`` when this generator cannot run here; cheap (no weights loaded)."""

    def load(self) -> None:
        """Load weights or discover voices; idempotent."""

    @abstractmethod
    def generate(self, request: GenerateRequest, out_dir: Path, progress: bool = False) -> GenerateResult:
        """Write ``request.count`` files under ``out_dir``; the same request and seed give the same files."""


def safe_name(text: str) -> str:
    """A file-name-safe stem for a class name: 'T-shirt/top' -> 't-shirt-top'."""
    import re

    stem = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    return stem[:48] or "class"
