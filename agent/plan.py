"""The plan is data: an ordered list of typed step configs that round-trips through JSON.

The offline planner (``offline_plan``) writes it from a spec; an LLM planner may
propose one as JSON, validated here before anything runs; ``design.json`` keeps it
so a run can be replayed.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from agent.spec import DesignSpec, InputSpec
from compilers.build import CompileConfig
from generators.ddpm import DDPMConfig
from generators.gate import GateConfig
from generators.text_to_image import TextToImageConfig
from knowledge.devices import get_device
from knowledge.errors import NanofactoryError
from knowledge.labeling import LabelConfig
from knowledge.teachers.base import TeacherConfig
from tools.quantize import QuantizeConfig
from tools.qat import QATConfig
from tools.search import SearchConfig
from tools.sizing import DEFAULT_MAX_MACS, size_student
from tools.student import StudentConfig
from tools.train import TrainConfig


class _Step(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DataStep(_Step):
    kind: Literal["data"] = "data"
    input: InputSpec


class TeacherStep(_Step):
    kind: Literal["teacher"] = "teacher"
    teacher: TeacherConfig = Field(default_factory=TeacherConfig)


class LabelStep(_Step):
    kind: Literal["label"] = "label"
    label: LabelConfig = Field(default_factory=LabelConfig)


class GenerateStep(_Step):
    """Synthetic images for short classes, kept only where the teacher agrees (generators/)."""

    kind: Literal["generate"] = "generate"
    mode: Literal["auto", "on", "off"] = Field(
        "auto", description="auto: classes with fewer than min_per_class confident labels; on: `classes` "
        "(every named class when empty); off: never")
    classes: list[str] = Field(default_factory=list, description="with mode 'on': the classes to generate for")
    min_per_class: int = Field(20, ge=1, description="a class with fewer confident training labels is short")
    candidates_per_class: int = Field(200, ge=1, le=10_000, description="generated before the quality gate")
    text_to_image: TextToImageConfig | None = Field(None, description="a diffusers pipeline; None = train the DDPM")
    ddpm: DDPMConfig = Field(default_factory=DDPMConfig)
    gate: GateConfig = Field(default_factory=GateConfig)


class SearchStep(_Step):
    """Hardware-aware architecture search (tools/search.py); the train step's student is the baseline it must beat."""

    kind: Literal["search"] = "search"
    search: SearchConfig = Field(default_factory=SearchConfig)


class TrainStep(_Step):
    kind: Literal["train"] = "train"
    student: StudentConfig
    train: TrainConfig = Field(default_factory=TrainConfig)
    oracle: bool = Field(True, description="also train the same student on hidden true labels, when the pool has them")
    clean_labels: bool = Field(
        False, description="train twice: the second time without the auto-labels the first student confidently "
        "contradicts (confident learning). Off by default: +0.3 point on the demo for twice the training time")


class QuantizeStep(_Step):
    kind: Literal["quantize"] = "quantize"
    quantize: QuantizeConfig = Field(default_factory=QuantizeConfig)
    qat: QATConfig = Field(default_factory=QATConfig, description="the PTQ gate and the QAT fine-tuning behind it")


class CompileStep(_Step):
    kind: Literal["compile"] = "compile"
    compile: CompileConfig = Field(default_factory=CompileConfig)
    verify: bool = Field(True, description="check the C library against TFLite Micro and LiteRT, and build for Cortex-M")
    verify_samples: int | None = Field(2000, ge=1, description="inputs run through TFLM/LiteRT (None: all)")


class ReportStep(_Step):
    kind: Literal["report"] = "report"
    samples_per_class: int = Field(12, ge=0)


Step = Annotated[DataStep | TeacherStep | LabelStep | GenerateStep | SearchStep | TrainStep | QuantizeStep | CompileStep | ReportStep,
                 Field(discriminator="kind")]


class Plan(BaseModel):
    model_config = ConfigDict(extra="forbid")

    steps: list[Step]

    def step(self, kind: str):
        for s in self.steps:
            if s.kind == kind:
                return s
        raise KeyError(kind)


REQUIRED_STEPS = ("data", "teacher", "label", "train", "quantize", "compile", "report")


def check_plan(spec: DesignSpec, plan: Plan) -> None:
    """One sentence, before a run starts, for a plan that cannot build its spec (a hand-edited one): a step
    missing, or a student whose outputs or input do not match the spec's classes and the data step's images."""
    kinds = [s.kind for s in plan.steps]
    missing = [k for k in REQUIRED_STEPS if k not in kinds]
    if missing:
        raise NanofactoryError(f"The plan has no {', '.join(missing)} step; a plan needs {', '.join(REQUIRED_STEPS)} "
                               "(a run's design.json has them all).")
    student, data = plan.step("train").student, plan.step("data").input
    if student.num_classes != len(spec.label_names):
        raise NanofactoryError(f"The plan's student has {student.num_classes} outputs but the spec has "
                               f"{len(spec.label_names)} labels ({', '.join(spec.label_names)}); make num_classes "
                               f"{len(spec.label_names)}.")
    if (student.input_size, student.in_channels) != (data.size, data.channels):
        raise NanofactoryError(f"The plan's student takes {student.input_size}x{student.input_size}x{student.in_channels} "
                               f"but its data step makes {data.size}x{data.size}x{data.channels} images; make them agree.")


def default_input(spec: DesignSpec, native_size: int | None, native_channels: int | None) -> InputSpec:
    """The spec's input, else small in-memory images at their own size (Fashion-MNIST: 28x28x1), else 64 px RGB."""
    if spec.input is not None:
        return spec.input
    if native_size is not None and native_size <= 64:
        return InputSpec(size=native_size, channels=native_channels or 3)
    return InputSpec()


def offline_plan(
    spec: DesignSpec,
    input_spec: InputSpec,
    teacher: TeacherConfig | None = None,
    train: TrainConfig | None = None,
    max_macs: int = DEFAULT_MAX_MACS,
    generate: GenerateStep | None = None,
    search: SearchConfig | None = None,
) -> Plan:
    """The deterministic plan: teacher labels, synthetic data for short classes, a fixed DS-CNN sized to the
    budget (and, with ``search``, an architecture search that must beat it), KD, PTQ int8, compile."""
    device = get_device(spec.device)
    student, _ = size_student(
        device, input_spec.size, input_spec.channels, len(spec.label_names),
        spec.budgets.flash_bytes, spec.budgets.sram_bytes, spec.budgets.latency_ms, max_macs,
    )
    return Plan(steps=[
        DataStep(input=input_spec),
        TeacherStep(teacher=teacher or TeacherConfig()),
        LabelStep(),
        generate or GenerateStep(),
        *([SearchStep(search=search.model_copy(update={"max_macs": max_macs}))] if search is not None else []),
        TrainStep(student=student, train=train or TrainConfig()),
        QuantizeStep(),
        CompileStep(),
        ReportStep(),
    ])
