"""Agent tools: thin typed adapters over the library. Each docstring is the LLM's contract.

A tool takes one validated arguments model, reads and updates the agent state, and returns
a compact JSON-able result. Expected domain failures come back as ``{"error": ...}`` the
model can act on; bugs still raise. There is no shell, no code execution, and every path
is confined to the workspace and the runs folder.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from agent.context import MAX_TEXT, Context
from knowledge.errors import MissingInformation, NanofactoryError
from knowledge.registry import Registry


class Args(BaseModel):
    model_config = ConfigDict(extra="forbid")


@dataclass
class ToolOutcome:
    result: dict
    update: dict = field(default_factory=dict)


@dataclass(frozen=True)
class AgentTool:
    name: str
    args: type[Args]
    run: Callable[[Args, dict, Context], ToolOutcome]

    @property
    def description(self) -> str:
        return (self.run.__doc__ or "").strip()

    def schema(self) -> dict:
        """OpenAI-style function schema for bind_tools."""
        return {"type": "function", "function": {"name": self.name, "description": self.description,
                                                 "parameters": self.args.model_json_schema()}}


AGENT_TOOLS: Registry[AgentTool] = Registry("agent tool")


def register_tool(name: str, args: type[Args]):
    def decorate(fn):
        AGENT_TOOLS.register(name)(lambda: AgentTool(name, args, fn))
        return fn

    return decorate


def list_tools() -> list[AgentTool]:
    return [AGENT_TOOLS.create(n) for n in AGENT_TOOLS.names()]


def call_tool(name: str, raw_args: dict, state: dict, ctx: Context) -> ToolOutcome:
    """Validate and run one tool call; invalid calls and domain failures become errors for the model."""
    if name not in AGENT_TOOLS:
        return ToolOutcome({"error": f"There is no tool {name!r}; use one of: {', '.join(AGENT_TOOLS.names())}."})
    tool = AGENT_TOOLS.create(name)
    try:
        args = tool.args.model_validate(raw_args or {})
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "arguments"
        return ToolOutcome({"error": f"Invalid arguments for {name}: `{where}`: {first['msg']}."})
    try:
        return tool.run(args, state, ctx)
    except MissingInformation as e:
        return ToolOutcome({"status": "needs_input", "question": str(e)})
    except NanofactoryError as e:
        return ToolOutcome({"error": str(e)})


# ---- the tools ---------------------------------------------------------------------------------


class MakeSpecArgs(Args):
    request: str = Field(max_length=MAX_TEXT, description="the user's request in their words, with any answers added")
    images: str | None = Field(None, max_length=1024, description="folder of unlabeled images, or 'fashion-mnist'")
    examples: str | None = Field(None, max_length=1024, description="folder with one subfolder of examples per class")
    test: str | None = Field(None, max_length=1024, description="labeled test folder, or 'fashion-mnist'")


def _source(value: str | None, ctx: Context, split: str = "train"):
    from agent.spec import PoolSource

    if value is None:
        return None
    if value == "fashion-mnist":
        return PoolSource(kind="fashion-mnist", split=split)
    return PoolSource(kind="folder", path=ctx.confine(value))


@register_tool("make_spec", MakeSpecArgs)
def make_spec(args: MakeSpecArgs, state: dict, ctx: Context) -> ToolOutcome:
    """Turn the request into a design spec (device, classes, budgets, data). Returns the spec summary,
    or {"status": "needs_input", "question": ...} when the device or the classes are missing."""
    from agent.parse import spec_from_request
    from agent.spec import DataSpec

    images = args.images or (state.get("data") or {}).get("images")
    if not images:
        return ToolOutcome({"status": "needs_input",
                            "question": "Which images should I learn from? Give a folder of your images."})
    data = DataSpec(pool=[_source(images, ctx)],
                    examples_dir=ctx.confine(args.examples) if args.examples else None,
                    test=_source(args.test, ctx, split="test"))
    # folders named in this call are remembered, so the call after the next question need not name them again
    named = {key: value for key, value in (("images", args.images), ("examples", args.examples),
                                           ("test", args.test)) if value}
    kept = {"data": {**(state.get("data") or {}), **named}} if named else {}
    try:
        spec = spec_from_request(args.request, data)
    except MissingInformation as e:
        return ToolOutcome({"status": "needs_input", "question": str(e)}, kept)
    summary = {"device": spec.device, "labels": spec.label_names,
               "budgets": spec.budgets.model_dump(exclude_none=True)}
    return ToolOutcome({"status": "ok", "spec": summary},
                       {"spec": json.loads(spec.to_json()), "request": args.request, "plan": None,
                        "run_id": None, "metrics": None, "failed_checks": [], **kept})


class InspectPoolArgs(Args):
    path: str = Field(max_length=1024, description="a folder of images inside the workspace")


@register_tool("inspect_pool", InspectPoolArgs)
def inspect_pool(args: InspectPoolArgs, state: dict, ctx: Context) -> ToolOutcome:
    """Count the readable and unreadable images in a folder (recursive) before building on it."""
    from knowledge.pools import load_folder

    pool = load_folder(ctx.confine(args.path))
    return ToolOutcome({"images": len(pool), "unreadable": len(pool.skipped),
                        "first": pool.uids[:3]})


class UpdateSpecArgs(Args):
    input_size: int | None = Field(None, ge=8, le=512, description="student input side in pixels")
    sram_kb: float | None = Field(None, gt=0, description="SRAM budget in KB")
    flash_kb: float | None = Field(None, gt=0, description="flash budget in KB")
    latency_ms: float | None = Field(None, gt=0, description="latency budget in ms")
    accuracy_floor: float | None = Field(None, ge=0, le=1, description="lowest acceptable test accuracy, 0-1")
    reason: str = Field(max_length=500, description="why, in one sentence the user will read")
    user_approved: bool = Field(False, description="true only when the user agreed to a looser budget")


@register_tool("update_spec", UpdateSpecArgs)
def update_spec(args: UpdateSpecArgs, state: dict, ctx: Context) -> ToolOutcome:
    """Change the student's input size or a budget. Loosening a budget (more SRAM, flash or latency,
    a lower accuracy floor) needs user_approved=true after the user said yes."""
    from agent.spec import DesignSpec

    if not state.get("spec"):
        return ToolOutcome({"error": "There is no spec yet; call make_spec first."})
    spec = DesignSpec.model_validate(state["spec"])
    budgets = spec.budgets.model_dump()
    new = {"sram_bytes": None if args.sram_kb is None else int(args.sram_kb * 1024),
           "flash_bytes": None if args.flash_kb is None else int(args.flash_kb * 1024),
           "latency_ms": args.latency_ms, "accuracy_floor": args.accuracy_floor}
    looser = [k for k, v in new.items() if v is not None and budgets[k] is not None
              and (v < budgets[k] if k == "accuracy_floor" else v > budgets[k])]
    if looser and not args.user_approved:
        return ToolOutcome({"error": f"Loosening {', '.join(looser)} needs the user's consent; ask with ask_user first."})
    budgets.update({k: v for k, v in new.items() if v is not None})
    data = {**json.loads(spec.to_json()), "budgets": budgets}
    if args.input_size is not None:
        channels = spec.input.channels if spec.input else (native_input(spec)[1] or 3)
        data["input"] = {"size": args.input_size, "channels": channels}
    spec = DesignSpec.model_validate(data)
    decision = f"update_spec: {args.reason}"
    return ToolOutcome({"status": "ok", "input": spec.input.model_dump() if spec.input else None,
                        "budgets": spec.budgets.model_dump(exclude_none=True)},
                       {"spec": json.loads(spec.to_json()), "plan": None, "replans": state.get("replans", 0) + 1,
                        "decisions": state.get("decisions", []) + [decision]})


def _spec(state: dict):
    from agent.spec import DesignSpec

    if not state.get("spec"):
        raise NanofactoryError("There is no spec yet; call make_spec first.")
    return DesignSpec.model_validate(state["spec"])


def native_input(spec) -> tuple[int | None, int | None]:
    from agent.data import load_pool, native_shape

    return native_shape(load_pool(spec))


class PlanBuildArgs(Args):
    search: bool = Field(False, description="also search architectures (MobileNetV2-style space) under the budgets; "
                         "the sized DS-CNN competes in the pick. Adds minutes; only when the user asks for a search")
    search_candidates: int = Field(1000, ge=10, le=100_000, description="with search: architectures scored")
    max_macs: int | None = Field(None, ge=100_000, le=10**10, description="largest student in multiply-accumulates "
                                 "per image (default 1,500,000: CPU training time grows with it); only when the "
                                 "user asks for a larger or faster student")


@register_tool("plan_build", PlanBuildArgs)
def plan_build(args: PlanBuildArgs, state: dict, ctx: Context) -> ToolOutcome:
    """Size the student for the spec's device and budgets. Returns the plan's student and its cost
    (and whether an architecture search follows), or failed checks naming what does not fit and the
    smallest student's needs."""
    from agent.plan import default_input, offline_plan
    from tools.search import SearchConfig
    from tools.sizing import DoesNotFit
    from tools.train import TrainConfig

    spec = _spec(state)
    input_spec = default_input(spec, *native_input(spec))
    train = TrainConfig(epochs=ctx.epochs) if ctx.epochs else None
    search = SearchConfig(candidates=args.search_candidates) if args.search else None
    caps = {} if args.max_macs is None else {"max_macs": args.max_macs}
    try:
        plan = offline_plan(spec, input_spec, train=train, search=search, **caps)
    except DoesNotFit as e:
        check = {"check": "fits", "ok": False, "message": str(e), "shortfalls": e.shortfalls(),
                 "input_size": input_spec.size}
        return ToolOutcome({"status": "does_not_fit", "failed_checks": [check]}, {"plan": None, "failed_checks": [check]})
    from knowledge.devices import get_device
    from tools.cost import estimate_cost

    student = plan.step("train").student
    cost = estimate_cost(student, get_device(spec.device))
    searched = {"candidates": args.search_candidates, "max_macs": plan.step("search").search.max_macs} \
        if args.search else None
    return ToolOutcome({"status": "ok", "student": student.name, "input": input_spec.model_dump(),
                        "cost": {"weight_kb": round(cost.weight_bytes / 1024, 1), "sram_kb": round(cost.sram_bytes / 1024, 1),
                                 "macs": cost.macs, "latency_ms": round(cost.latency_ms, 2),
                                 **({"library_floor_ms": round(cost.floor_ms, 2)} if cost.floor_ms else {}),
                                 **({"library_stack_bytes": cost.stack_bytes} if cost.stack_bytes else {})},
                        "search": searched},
                       {"plan": json.loads(plan.model_dump_json()), "failed_checks": []})


class RunBuildArgs(Args):
    until: Literal["data", "teacher", "label", "train", "quantize", "evaluate", "report"] = Field(
        "report", description="stop after this stage (label: auto-label only); a later call continues")


@register_tool("run_build", RunBuildArgs)
def run_build(args: RunBuildArgs, state: dict, ctx: Context) -> ToolOutcome:
    """Run the plan: teacher labels, distillation, int8, evaluation, report. Resumes the same run when
    called again. Returns the stage results or the final metrics and checks (fit, accuracy floor)."""
    from agent.metrics import review_hint, weakest_class
    from agent.pipeline import create_run, execute, open_run
    from agent.plan import Plan
    from agent.runs import RunStore

    spec = _spec(state)
    if not state.get("plan"):
        return ToolOutcome({"error": "There is no plan that fits yet; call plan_build first."})
    store = RunStore(ctx.runs_dir)
    calls = [{"tool": c["name"], "args": c.get("args") or {}} for m in state.get("messages", [])
             for c in (getattr(m, "tool_calls", None) or [])]
    decisions = {"planner": ctx.planner_name, "changes": state.get("decisions", []), "tool_calls": calls}
    run = open_run(store, state["run_id"]) if state.get("run_id") else \
        create_run(spec, Plan.model_validate(state["plan"]), store, decisions)
    metrics = execute(run, store, show_bars=ctx.show_bars, until=args.until)
    if metrics is None:
        done = run.finished_stages()
        return ToolOutcome({"status": "partial", "run_id": run.id, "finished": done,
                            args.until: run.result(args.until)}, {"run_id": run.id})
    checks = [{"check": "fits_flash", "ok": metrics["fits_flash"]}, {"check": "fits_sram", "ok": metrics["fits_sram"]}]
    if metrics.get("library_flash_bytes") is not None:  # measured on the device's core: what a failed check is about
        checks[0]["message"] = (f"weights {metrics['weight_bytes']:,} B, this C library {metrics['library_flash_bytes']:,} B "
                                f"with its code, budget {metrics['flash_bytes_budget']:,} B")
        checks[1]["message"] = (f"arena {metrics['sram_estimate_bytes']:,} B, with the stack an inference used "
                                f"{metrics['library_ram_bytes']:,} B, budget {metrics['sram_bytes_budget']:,} B")
    if metrics["meets_latency"] is not None:
        floor = metrics.get("latency_floor_ms")
        checks.append({"check": "latency", "ok": metrics["meets_latency"],
                       "message": f"estimate {metrics['latency_estimate_ms']:.1f} ms"
                       + (f", this C library at least {floor:.1f} ms" if floor else "")
                       + f", budget {metrics['latency_budget_ms']:g} ms"})
    if metrics["meets_accuracy_floor"] is not None:
        checks.append({"check": "accuracy_floor", "ok": metrics["meets_accuracy_floor"],
                       "message": f"int8 accuracy {metrics['student_int8_test_accuracy']:.3f}, floor {metrics['accuracy_floor']}"})
    compact = {k: metrics.get(k) for k in ("student_int8_test_accuracy", "oracle_int8_test_accuracy", "weight_bytes",
                                            "sram_estimate_bytes", "library_flash_bytes", "library_ram_bytes",
                                            "latency_estimate_ms", "latency_floor_ms",
                                            "evaluated_on")}
    compact["weakest_class"] = weakest_class(metrics.get("per_class"))
    compact["next"] = review_hint(metrics, run.id, on_page=ctx.on_page)
    compact["report"] = str(run.dir / "report.html")
    if metrics.get("compiled"):  # what goes on the board
        compiled = Path(metrics["compiled"]["dir"])
        compact["deploy"] = {"c_library": str(compiled / "c"), "tflite": str(compiled / "model.tflite")}
        arduino = sorted((compiled / "arduino").glob("*/library.properties"))
        if arduino:
            compact["deploy"]["arduino_library"] = str(arduino[0].parent)
    failed = [c for c in checks if not c["ok"]]
    return ToolOutcome({"status": "done", "run_id": run.id, "metrics": compact, "checks": checks},
                       {"run_id": run.id, "metrics": compact, "failed_checks": failed})


class GenerateSamplesArgs(Args):
    generator: Literal["speech", "diffusers", "ddpm"] = Field(
        description="speech: keyword audio (espeak-ng, flite); diffusers: images from a text-to-image model; "
                    "ddpm: images from a DDPM a build trained")
    class_name: str = Field(min_length=1, max_length=200, description="the class, or the keyword to speak")
    description: str = Field("", max_length=MAX_TEXT, description="what it looks like, or the words to speak")
    count: int = Field(ge=1, le=5000)
    folder: str = Field(max_length=1024, description="output folder inside the workspace or the runs folder")
    model: str | None = Field(None, max_length=1024,
                              description="diffusers: hub id in the local cache or a pipeline folder; ddpm: its folder")
    seed: int = 0


@register_tool("generate_samples", GenerateSamplesArgs)
def generate_samples(args: GenerateSamplesArgs, state: dict, ctx: Context) -> ToolOutcome:
    """Synthesize training samples into a folder: keyword clips (generator "speech": 16 kHz mono WAV, many
    voices, speeds and pitches, with noise and reverb) or images of a class ("diffusers" with a model).
    Returns the folder and how many files, or an error saying why the generator cannot run here. Builds
    already synthesize images for short classes themselves; this is for keyword audio or a folder by hand."""
    from pathlib import Path

    from generators import GenerateRequest, create_generator_by_name
    from knowledge.io import looks_like_path

    folder = ctx.confine(args.folder)
    fields = {}
    if args.model:
        local = looks_like_path(args.model) or (ctx.workspace / args.model).exists()
        fields["model"] = str(ctx.confine(args.model)) if local else args.model  # else a hub id, from the cache only
    generator = create_generator_by_name(args.generator, **fields)
    generator.check()
    request = GenerateRequest(class_name=args.class_name, description=args.description, count=args.count,
                              seed=args.seed)
    result = generator.generate(request, folder, progress=ctx.show_bars)
    return ToolOutcome({"status": "ok", "generator": args.generator, "files": len(result.files), "folder": str(folder),
                        "seconds": result.seconds, "first": [Path(p).name for p in result.paths[:3]]})


class AskUserArgs(Args):
    question: str = Field(max_length=1000, description="one clear question")


@register_tool("ask_user", AskUserArgs)
def ask_user(args: AskUserArgs, state: dict, ctx: Context) -> ToolOutcome:
    """Ask the user a question and wait for the answer (the device, the classes, consent to a budget)."""
    return ToolOutcome({"status": "asked", "question": args.question}, {"question": args.question})
