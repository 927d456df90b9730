"""DesignSpec: what the user wants, typed and validated.

A spec is the one input of a build. It loads from and saves to JSON or YAML;
validation errors name the field and say what is expected.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from knowledge.devices import get_device, remember_device
from knowledge.errors import NanofactoryError

FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ClassSpec(_Strict):
    """One class the model must recognise."""

    name: str = Field(min_length=1, description="short name, e.g. 'sneaker'")
    description: str = Field("", description="what it looks like; defaults to 'a photo of a <name>'")
    examples: list[Path] = Field(default_factory=list, description="a few example images")
    negatives: list[str] = Field(default_factory=list, description="things that are NOT this class")

    @model_validator(mode="before")
    @classmethod
    def _from_name(cls, data):
        return {"name": data} if isinstance(data, str) else data  # "classes: [cat, dog]" in a spec file

    @field_validator("name")
    @classmethod
    def _clean_name(cls, v: str) -> str:
        v = v.strip()
        if v.lower() == "other":
            raise ValueError("'other' is the built-in bucket for everything else; use the spec's `other` flag")
        return v

    @property
    def prompt(self) -> str:
        return self.description or f"a photo of a {self.name}"


class Budgets(_Strict):
    """Hard limits; ``None`` means 'what the device has' (flash, SRAM) or 'no limit'."""

    flash_bytes: int | None = Field(None, gt=0)
    sram_bytes: int | None = Field(None, gt=0)
    latency_ms: float | None = Field(None, gt=0)
    accuracy_floor: float | None = Field(None, ge=0, le=1)


class PoolSource(_Strict):
    """Where unlabeled images come from."""

    kind: Literal["folder", "fashion-mnist"]
    path: Path | None = None
    split: Literal["train", "test"] = "train"
    limit: int | None = Field(None, gt=0, description="use at most this many images")

    @model_validator(mode="after")
    def _need_path(self) -> "PoolSource":
        if self.kind == "folder" and self.path is None:
            raise ValueError("a folder source needs a `path`")
        return self


class DataSpec(_Strict):
    pool: list[PoolSource] = Field(min_length=1)
    examples_dir: Path | None = Field(None, description="one subfolder of example images per class")
    test: PoolSource | None = Field(None, description="labeled images used only to measure")


class InputSpec(_Strict):
    """The student's input tensor."""

    size: int = Field(64, ge=8, le=512)  # 64 px RGB: the usual MCU camera crop for coarse classes
    channels: Literal[1, 3] = 3


class DesignSpec(_Strict):
    task: Literal["image-classification"] = "image-classification"
    classes: list[ClassSpec] = Field(min_length=1)
    other: bool = Field(True, description="add an 'other' class for everything that is none of them")
    device: str
    budgets: Budgets = Field(default_factory=Budgets)
    data: DataSpec
    input: InputSpec | None = Field(None, description="student input; None = from the pool (native size of small images, else 64 px RGB)")
    seed: int = Field(0, ge=0, lt=2**32, description="random seed: 0 to 4294967295")
    request: str | None = None

    @field_validator("device")
    @classmethod
    def _known_device(cls, v: str) -> str:
        try:
            return get_device(v).name
        except NanofactoryError as e:
            raise ValueError(str(e)) from None

    @field_validator("classes")
    @classmethod
    def _unique(cls, v: list[ClassSpec]) -> list[ClassSpec]:
        names = [c.name.lower() for c in v]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"class names must be unique; repeated: {', '.join(dupes)}")
        return v

    @model_validator(mode="after")
    def _enough_classes(self) -> "DesignSpec":
        if len(self.classes) + int(self.other) < 2:
            raise ValueError("a classifier needs at least two outputs: name two classes or keep `other`")
        return self

    @property
    def label_names(self) -> list[str]:
        """Output labels of the model, in order; 'other' last when enabled."""
        return [c.name for c in self.classes] + (["other"] if self.other else [])

    # ---- files -----------------------------------------------------------------------------

    def to_json(self) -> str:
        return self.model_dump_json(indent=2)

    def save(self, path: Path) -> None:
        from knowledge.io import write_text_atomic

        path = Path(path)
        data = json.loads(self.to_json())
        if path.suffix in (".yaml", ".yml"):
            import yaml

            write_text_atomic(path, yaml.safe_dump(data, sort_keys=False))
        else:
            write_text_atomic(path, json.dumps(data, indent=2) + "\n")

    @classmethod
    def load(cls, path: Path) -> "DesignSpec":
        path = Path(path)
        if not path.is_file():
            raise NanofactoryError(f"Spec file {path} does not exist; pass the path of a .json or .yaml spec.")
        try:
            text = path.read_text()
        except UnicodeDecodeError:
            raise NanofactoryError(f"Spec {path} is not a text file; pass a .json or .yaml spec.") from None
        if path.suffix in (".yaml", ".yml"):
            import yaml

            try:
                data = yaml.safe_load(text)
            except yaml.YAMLError as e:
                mark = getattr(e, "problem_mark", None)
                where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
                raise NanofactoryError(f"Spec {path} is not valid YAML{where}; fix the syntax and retry.") from None
        else:
            try:
                data = json.loads(text)
            except json.JSONDecodeError as e:
                raise NanofactoryError(
                    f"Spec {path} is not valid JSON (line {e.lineno}, column {e.colno}); fix the syntax and retry."
                ) from None
        if not isinstance(data, dict):
            raise NanofactoryError(f"Spec {path} must be a mapping of fields (task, classes, device, ...).")
        return cls.from_dict(data, source=str(path)).relative_to_file(path)

    def relative_to_file(self, path: Path) -> "DesignSpec":
        """Relative folders and example images in a spec file are read from the file's folder, wherever the
        command runs (a spec kept beside its images works from anywhere)."""
        base = Path(path).resolve().parent

        def at(p: Path | None) -> Path | None:
            return p if p is None or p.expanduser().is_absolute() else base / p

        data = self.data.model_copy(update={
            "pool": [s.model_copy(update={"path": at(s.path)}) for s in self.data.pool],
            "examples_dir": at(self.data.examples_dir),
            "test": self.data.test and self.data.test.model_copy(update={"path": at(self.data.test.path)})})
        classes = [c.model_copy(update={"examples": [at(e) for e in c.examples]}) for c in self.classes]
        return self.model_copy(update={"data": data, "classes": classes})

    @classmethod
    def from_dict(cls, data: dict, source: str = "spec") -> "DesignSpec":
        try:
            return cls.model_validate(data)
        except ValidationError as e:
            raise NanofactoryError(describe_validation_error(e, source)) from None


def spec_from_design(design: dict, source: str) -> DesignSpec:
    """A run's spec from its design.json (or a saved plan); the board it recorded is made known first, so a run
    made for a board of a devices file resumes and replays without that file."""
    remember_device(design.get("device"), source)
    return DesignSpec.from_dict(design["spec"], source=source)


def describe_validation_error(error: ValidationError, source: str) -> str:
    """One sentence naming the first bad field, e.g. "budgets.sram_bytes: must be > 0"."""
    first = error.errors()[0]
    field = ".".join(str(p) for p in first["loc"]) or "(top level)"
    msg = first["msg"].removeprefix("Value error, ").rstrip(".")
    more = len(error.errors()) - 1
    tail = f" (and {more} more problem{'s' if more > 1 else ''})" if more else ""
    return f"{source}: field `{field}`: {msg}{tail}."
