"""The ``nanofactory`` command.

    nanofactory demo                       the smart-closet demo on Fashion-MNIST
    nanofactory build "REQUEST" --images DIR [--examples DIR]
    nanofactory build --spec spec.yaml     from a saved spec
    nanofactory build --resume RUN_ID      continue an interrupted run
    nanofactory spec "REQUEST"             print the spec a request becomes
    nanofactory runs [show RUN_ID]         list past runs / show one
    nanofactory devices                    the device catalog
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from knowledge.errors import NanofactoryError

EPILOG = """examples:
  nanofactory demo
  nanofactory build "a pet-door camera that tells apart cats, dogs and everything else on an nRF52840" \\
      --images ~/pet-door-shots --examples ~/pet-door-examples
  nanofactory build --spec closet.yaml
  nanofactory spec "sort shirts, bags and everything else on an ESP32-S3 with 256K RAM"
"""


def _data_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--images", metavar="DIR", help="folder of unlabeled images (searched recursively), "
                   "or 'fashion-mnist' for the packaged Fashion-MNIST pool")
    p.add_argument("--examples", metavar="DIR", type=Path,
                   help="a few example images per class: one subfolder per class name (an 'other' subfolder is allowed)")
    p.add_argument("--test", metavar="DIR", help="labeled test images, one subfolder per class "
                   "(or 'fashion-mnist'); without it, accuracy is measured on auto-labeled validation data")
    p.add_argument("--pool-limit", type=int, metavar="N", help="use at most N pool images")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="nanofactory", description="Design a tiny int8 image classifier for a "
                                     "microcontroller from a plain-language request and unlabeled images.",
                                     epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-v", "--verbose", action="store_true", help="log each step")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    b = sub.add_parser("build", help="build a model from a request, a spec file, or resume a run",
                       description="Label the pool with the teacher, train and distil the student, quantize to int8, "
                       "verify, and write runs/<id>/ with model_int8.onnx, metrics.json and report.html.")
    b.add_argument("request", nargs="?", help="what to build, in plain words (device, classes, budgets)")
    b.add_argument("--spec", type=Path, help="a saved spec (.json or .yaml) instead of a request")
    b.add_argument("--resume", metavar="RUN_ID", help="continue an interrupted run from its last finished stage")
    _data_args(b)
    _build_options(b)

    d = sub.add_parser("demo", help="the smart-closet demo: 5 examples per class, unlabeled Fashion-MNIST, STM32F446",
                       description="Builds the demo end to end and prints a summary; `make demo` runs this.")
    d.add_argument("--pool-limit", type=int, metavar="N", help="use at most N Fashion-MNIST train images")
    _build_options(d)

    s = sub.add_parser("spec", help="print the spec a request turns into (exit 2 with a question if incomplete)")
    s.add_argument("request")
    _data_args(s)
    s.add_argument("--save", type=Path, metavar="FILE", help="also write it to FILE (.json or .yaml)")

    r = sub.add_parser("runs", help="list past runs, or `runs show RUN_ID` for one")
    r.add_argument("action", nargs="?", choices=["show"])
    r.add_argument("run_id", nargs="?")
    r.add_argument("--runs-dir", type=Path, help="where runs live (default ./runs or $NANOFACTORY_RUNS)")

    c = sub.add_parser("chat", help="talk to the agent: it asks what is missing, plans, builds and re-plans",
                       description="The agent in the terminal. With no LLM configured it uses the offline planner. "
                       "LLM: --llm-model (and --llm-base-url for an OpenAI-compatible server such as vLLM, "
                       "llama.cpp or LM Studio; --llm-provider ollama for Ollama), or the NANOFACTORY_LLM_* "
                       "environment variables. Conversations are saved; --thread ID resumes one.")
    c.add_argument("request", nargs="?", help="the first message (or the answer to a pending question)")
    c.add_argument("--images", metavar="DIR", help="folder of unlabeled images, or 'fashion-mnist'")
    c.add_argument("--examples", metavar="DIR", help="a few example images per class, one subfolder per class")
    c.add_argument("--test", metavar="DIR", help="labeled test images, one subfolder per class, or 'fashion-mnist'")
    c.add_argument("--thread", help="resume this conversation")
    c.add_argument("--llm-model", help="model name at the endpoint")
    c.add_argument("--llm-base-url", help="OpenAI-compatible endpoint, e.g. http://127.0.0.1:8080/v1")
    c.add_argument("--llm-provider", choices=["openai", "ollama"])
    c.add_argument("--max-steps", type=int, default=24, help="model turns per message before it stops (default 24)")
    c.add_argument("--runs-dir", type=Path, help="where runs and saved conversations live (default ./runs)")
    c.add_argument("--epochs", type=int, help="training epochs (default 8)")
    c.add_argument("--quiet", action="store_true", help="no progress bars")

    p = sub.add_parser("run", help="replay a saved plan (a run's design.json, or YAML with spec and plan) without an LLM")
    p.add_argument("plan", type=Path)
    p.add_argument("--runs-dir", type=Path, help="where runs live (default ./runs or $NANOFACTORY_RUNS)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")

    sub.add_parser("devices", help="the device catalog: core, clock, SRAM, flash, int8 MAC/cycle")
    return parser


def _build_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--runs-dir", type=Path, help="where runs live (default ./runs or $NANOFACTORY_RUNS)")
    p.add_argument("--epochs", type=int, help="training epochs (default 8)")
    p.add_argument("--seed", type=int, help="random seed (default: the spec's, 0)")
    p.add_argument("--teacher", help="teacher registry name: efficientnet-lite (default, offline) or clip")
    p.add_argument("--teacher-model", metavar="ID_OR_PATH",
                   help="teacher weights: a hub id or local folder (clip), or efficientnet-lite0/1/2")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def _source(value: str | None, split: str = "train", limit: int | None = None):
    from agent.spec import PoolSource

    if value is None:
        return None
    if value == "fashion-mnist":
        return PoolSource(kind="fashion-mnist", split=split, limit=limit)
    return PoolSource(kind="folder", path=Path(value).expanduser().resolve(), limit=limit)


def _data_spec(args):
    from agent.spec import DataSpec

    if not args.images:
        raise NanofactoryError("No images to learn from: pass --images DIR (a folder of your images) "
                               "or --images fashion-mnist, or run `nanofactory demo`.")
    examples = args.examples.expanduser().resolve() if args.examples else None
    return DataSpec(pool=[_source(args.images, limit=args.pool_limit)], examples_dir=examples,
                    test=_source(args.test, split="test"))


def _spec_from_args(args):
    from agent.parse import spec_from_request
    from agent.spec import DesignSpec

    if args.spec:
        if args.request:
            raise NanofactoryError("Give either a request or --spec FILE, not both.")
        spec = DesignSpec.load(args.spec)
        if args.images:
            spec = spec.model_copy(update={"data": _data_spec(args)})
        return spec
    if not args.request:
        raise NanofactoryError('Say what to build, e.g. nanofactory build "sort shirts and bags on an STM32F446" '
                               "--images DIR, or pass --spec FILE.")
    return spec_from_request(args.request, _data_spec(args))


def _run_build(spec, args, store) -> dict:
    from agent.pipeline import create_run
    from agent.plan import default_input, offline_plan
    from agent.data import load_examples, load_pool, native_shape
    from knowledge.teachers.base import TeacherConfig
    from tools.train import TrainConfig

    if args.seed is not None:
        spec = spec.model_copy(update={"seed": args.seed})
    pool = load_pool(spec)  # fail fast on bad folders, before a run folder exists
    load_examples(spec)
    teacher = TeacherConfig(name=args.teacher or "efficientnet-lite", model=args.teacher_model)
    train = TrainConfig(epochs=args.epochs) if args.epochs else None
    plan = offline_plan(spec, default_input(spec, *native_shape(pool)), teacher=teacher, train=train)
    run = create_run(spec, plan, store)
    _say(f"run {run.id}: {len(spec.classes)} classes{' + other' if spec.other else ''} on {spec.device}, "
         f"student {plan.step('train').student.name}")
    return _execute(run, store, args)


def _execute(run, store, args) -> dict:
    from agent.pipeline import execute

    def progress(stage: str, event: str) -> None:
        if event == "start":
            _say(f"  {stage} ...")
        else:
            _say(f"  {stage} done in {event.split()[1]} s")

    try:
        metrics = execute(run, store, progress, show_bars=not args.quiet)
    except KeyboardInterrupt:
        _say(f"interrupted; nothing half-written. Continue with: nanofactory build --resume {run.id}")
        raise SystemExit(130)
    _print_summary(run, metrics)
    return metrics


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _fmt(v, kind: str = "pct") -> str:
    if v is None:
        return "—"
    if kind == "pct":
        return f"{100 * v:.1f} %"
    if kind == "kb":
        return f"{v / 1024:.1f} KB"
    if kind == "ms":
        return f"{v:.1f} ms"
    return f"{v:,}"


def _print_summary(run, m: dict) -> None:
    rows = [
        ("device", m["device"]),
        ("evaluated on", m["evaluated_on"]),
        ("teacher label accuracy", _fmt(m["teacher_label_accuracy"])),
        ("student fp32 accuracy", _fmt(m["student_fp32_test_accuracy"])),
        ("student int8 accuracy", _fmt(m["student_int8_test_accuracy"])),
        ("oracle int8 accuracy", _fmt(m["oracle_int8_test_accuracy"])),
        ("student / oracle", "—" if m["student_oracle_ratio"] is None else f"{m['student_oracle_ratio']:.3f}"),
        ("int8 / fp32 top-1 agreement", _fmt(m["int8_fp32_top1_agreement"])),
        ("weights (flash)", f"{_fmt(m['weight_bytes'], 'kb')} of {_fmt(m['flash_bytes_budget'], 'kb')}"),
        ("SRAM estimate", f"{_fmt(m['sram_estimate_bytes'], 'kb')} of {_fmt(m['sram_bytes_budget'], 'kb')}"),
        ("MACs", _fmt(m["macs"], "int")),
        ("latency estimate", _fmt(m["latency_estimate_ms"], "ms")
         + (f" (budget {m['latency_budget_ms']:g} ms)" if m["latency_budget_ms"] else "")),
        ("build time", f"{m['timings_s']['total']:.0f} s"),
    ]
    width = max(len(k) for k, _ in rows)
    print("\n".join(f"{k:<{width}}  {v}" for k, v in rows))
    print(f"report: {run.dir / 'report.html'}")
    print(f"model:  {run.dir / 'model_int8.onnx'}")


def cmd_build(args) -> int:
    from agent.pipeline import open_run
    from agent.runs import RunStore

    store = RunStore(args.runs_dir)
    if args.resume:
        run = open_run(store, args.resume)
        done = run.finished_stages()
        _say(f"resuming {run.id}; finished: {', '.join(done) or 'nothing yet'}")
        _execute(run, store, args)
        return 0
    _run_build(_spec_from_args(args), args, store)
    return 0


def cmd_demo(args) -> int:
    from agent.demo import DEMO_REQUEST, demo_spec
    from agent.runs import RunStore

    store = RunStore(args.runs_dir)
    _say(f'demo request: "{DEMO_REQUEST}"')
    spec = demo_spec(store.root, pool_limit=args.pool_limit, seed=args.seed or 0)
    args.seed = None
    _run_build(spec, args, store)
    return 0


def cmd_spec(args) -> int:
    from agent.parse import spec_from_request
    from agent.spec import DataSpec, PoolSource

    data = _data_spec(args) if args.images else DataSpec(pool=[PoolSource(kind="fashion-mnist")])
    spec = spec_from_request(args.request, data)
    if args.save:
        spec.save(args.save)
    print(spec.to_json())
    return 0


def cmd_runs(args) -> int:
    from agent.runs import RunStore

    store = RunStore(args.runs_dir)
    if args.action == "show":
        if not args.run_id:
            raise NanofactoryError("Which run? Use `nanofactory runs show RUN_ID` (ids from `nanofactory runs`).")
        record = store.get(args.run_id)
        print(json.dumps({"run": record.__dict__, "path": str(store.path(args.run_id)),
                          "metrics": store.metrics(args.run_id)}, indent=2, default=str))
        return 0
    records = store.list()
    if not records:
        print(f"no runs under {store.root}")
        return 0
    header = f"{'run':<40} {'status':<11} {'device':<13} {'int8 acc':>8} {'oracle':>7} {'weights':>9} {'SRAM':>9} {'time':>6}"
    print(header)
    for r in records:
        acc = f"{100 * r.student_int8_accuracy:.1f}%" if r.student_int8_accuracy is not None else "—"
        ora = f"{100 * r.oracle_int8_accuracy:.1f}%" if r.oracle_int8_accuracy is not None else "—"
        w = f"{r.weight_bytes / 1024:.1f} KB" if r.weight_bytes else "—"
        s = f"{r.sram_bytes / 1024:.1f} KB" if r.sram_bytes else "—"
        t = f"{r.seconds:.0f}s" if r.seconds else "—"
        print(f"{r.id:<40} {r.status:<11} {r.device or '—':<13} {acc:>8} {ora:>7} {w:>9} {s:>9} {t:>6}")
    return 0


def cmd_devices(args) -> int:
    from knowledge.devices import list_devices

    print(f"{'device':<22} {'core':<24} {'MHz':>5} {'SRAM':>9} {'flash':>9} {'MAC/cycle':>9}")
    for d in list_devices():
        print(f"{d.name:<22} {d.core:<24} {d.clock_mhz:>5g} {d.sram_bytes // 1024:>6} KB "
              f"{d.flash_bytes // 1024:>6} KB {d.macs_per_cycle:>9.2f}")
    return 0


def cmd_chat(args) -> int:
    from agent.cli_chat import run_chat
    from agent.context import Context, LLMSettings
    from agent.runs import default_root

    llm = LLMSettings.from_env(args.llm_provider, args.llm_model, args.llm_base_url)
    data = {k: v for k, v in {"images": args.images, "examples": args.examples, "test": args.test}.items() if v}
    # folders the user named on the command line are theirs to use; the model may not reach beyond them
    trusted = [Path(v).expanduser().resolve() for v in data.values() if v != "fashion-mnist"]
    ctx = Context(runs_dir=args.runs_dir or default_root(), llm=llm, max_steps=args.max_steps,
                  epochs=args.epochs, show_bars=not args.quiet, extra_roots=trusted)
    return run_chat(ctx, args.request, data, args.thread)


def cmd_run(args) -> int:
    from agent.pipeline import replay
    from agent.runs import RunStore

    run, metrics = replay(args.plan, RunStore(args.runs_dir), show_bars=not args.quiet)
    _print_summary(run, metrics)
    return 0


COMMANDS = {"chat": cmd_chat, "run": cmd_run, "build": cmd_build, "demo": cmd_demo, "spec": cmd_spec, "runs": cmd_runs, "devices": cmd_devices}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        return COMMANDS[args.command](args)
    except NanofactoryError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code


if __name__ == "__main__":
    sys.exit(main())
