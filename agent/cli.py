"""The ``nanofactory`` command.

    nanofactory demo                       the smart-closet demo on Fashion-MNIST
    nanofactory build "REQUEST" --images DIR [--examples DIR]
    nanofactory build --spec spec.yaml     from a saved spec
    nanofactory build --resume RUN_ID      continue an interrupted run
    nanofactory spec "REQUEST"             print the spec a request becomes
    nanofactory runs [show RUN_ID]         list past runs / show one
    nanofactory compile RUN_ID             int8 C library + .tflite for a run (the build does this too)
    nanofactory verify RUN_ID              C library vs numpy reference, TFLite Micro and LiteRT
    nanofactory review RUN_ID [--retrain]  label what would help most, train a new run on it
    nanofactory find RUN_ID "TEXT"         search a run's pool by text (or --like IMAGE)
    nanofactory devices                    the device catalog
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from agent.cli_data import cmd_find, cmd_review, data_engine_options
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

    c = sub.add_parser("chat", help="talk to the agent in a web page (or --terminal): it asks what is missing, "
                       "plans, builds and re-plans",
                       description="Opens the web app on this machine: a chat with the agent beside the build's "
                       "progress, samples, review queue, plots and downloads. --terminal (implied by a REQUEST) talks "
                       "in the terminal instead. With no LLM configured it uses the offline planner. "
                       "LLM: --llm-model (and --llm-base-url for an OpenAI-compatible server such as vLLM, "
                       "llama.cpp or LM Studio; --llm-provider ollama for Ollama), or the NANOFACTORY_LLM_* "
                       "environment variables. Conversations are saved; --thread ID resumes one in the terminal.")
    c.add_argument("request", nargs="?", help="terminal: the first message (or the answer to a pending question)")
    c.add_argument("--terminal", action="store_true", help="chat in the terminal instead of the web page")
    c.add_argument("--host", default="127.0.0.1", help="web: address to listen on (default 127.0.0.1, this machine only)")
    c.add_argument("--port", type=int, help="web: port (default the first free one from 7860)")
    c.add_argument("--share", action="store_true", help="web: also open a public gradio.live link (off by default)")
    c.add_argument("--auth", metavar="USER:PASS", help="web: ask for this user and password (or set NANOFACTORY_AUTH)")
    c.add_argument("--no-browser", action="store_true", help="web: do not open a browser tab")
    c.add_argument("--images", metavar="DIR", help="folder of unlabeled images, or 'fashion-mnist'")
    c.add_argument("--examples", metavar="DIR", help="a few example images per class, one subfolder per class")
    c.add_argument("--test", metavar="DIR", help="labeled test images, one subfolder per class, or 'fashion-mnist'")
    c.add_argument("--thread", help="terminal: resume this conversation")
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

    k = sub.add_parser("compile", help="compile a run's model (or any ONNX CNN) to an int8 C library and .tflite",
                       description="Reads ONNX (opset >= 13), quantizes it to int8 with TFLite's conventions on "
                       "calibration data, plans the tensor arena, and writes model.tflite, a C99 library (model.h, "
                       "model.c, kernels, host harness, Makefile) and compile.json with the exact arena size.")
    k.add_argument("run", nargs="?", help="run id or run folder (uses its model.onnx and training data)")
    k.add_argument("--onnx", type=Path, metavar="FILE", help="compile this ONNX model instead of a run's")
    k.add_argument("--calibration", type=Path, metavar="FILE.npy",
                   help="with --onnx: representative float inputs, shape (N, C, H, W), preprocessed as the model expects")
    k.add_argument("--out", type=Path, metavar="DIR", help="output folder (default RUN/compiled, or next to --onnx)")
    k.add_argument("--runs-dir", type=Path, help="where runs live (default ./runs or $NANOFACTORY_RUNS)")

    v = sub.add_parser("verify", help="check a compiled run: C vs numpy reference, TFLite Micro, LiteRT; sizes; latency",
                       description="Builds the C library with gcc -O2 -Wall -Wextra -Werror, runs it on the run's "
                       "test inputs and compares with the numpy int8 reference, TFLite Micro and LiteRT bit for bit; "
                       "reports the arena against TFLM's, Cortex-M4/M7 sizes, int8 accuracy and host latency.")
    v.add_argument("run", help="run id or run folder")
    v.add_argument("--samples", default="2000", metavar="N|all", help="inputs run through TFLM and LiteRT (default 2000)")
    v.add_argument("--sanitize", action="store_true", help="build with AddressSanitizer and UBSan")
    v.add_argument("--runs-dir", type=Path, help="where runs live (default ./runs or $NANOFACTORY_RUNS)")

    sub.add_parser("devices", help="the device catalog: core, clock, SRAM, flash, int8 MAC/cycle")
    from agent import cli_data

    cli_data.add_parsers(sub)
    return parser


def _build_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--runs-dir", type=Path, help="where runs live (default ./runs or $NANOFACTORY_RUNS)")
    p.add_argument("--epochs", type=int, help="training epochs (default 8)")
    p.add_argument("--seed", type=int, help="random seed (default: the spec's, 0)")
    p.add_argument("--teacher", help="teacher registry name: efficientnet-lite (default, offline) or clip")
    p.add_argument("--teacher-model", metavar="ID_OR_PATH",
                   help="teacher weights: a hub id or local folder (clip), or efficientnet-lite0/1/2")
    p.add_argument("--generate", metavar="CLASSES", help="synthesize images for these classes (comma-separated, or "
                   "'all'); without it only classes with fewer than 20 confident labels get synthetic images")
    p.add_argument("--no-generate", action="store_true", help="never synthesize images")
    p.add_argument("--search", action="store_true", help="search architectures (mbnet space) under the budgets; the "
                   "fixed DS-CNN competes in the final pick (off by default: see the README's figures)")
    p.add_argument("--search-candidates", type=int, metavar="N", default=1000,
                   help="with --search: architectures scored (default 1000)")
    p.add_argument("--max-macs", metavar="N", help="largest student, in multiply-accumulates per image, for the "
                   "fixed one and the search (default 1.5M: training time on a CPU grows with it; e.g. 3.5M when "
                   "the labels are good and time allows); the device's budgets still apply")
    p.add_argument("--dedup", metavar="COSINE", default="0.985", help="near-duplicate threshold in the teacher's "
                   "embedding space: one image per group trains (default 0.985; 'off' keeps all)")
    p.add_argument("--balance", type=float, metavar="RATIO", help="cap every class at RATIO x the smallest class "
                   "(diverse picks; 'other' keeps its hard negatives first)")
    p.add_argument("--max-samples", type=int, metavar="N", help="train on at most N pool images, chosen to cover the "
                   "pool (k-center)")
    p.add_argument("--feature-distill", type=float, metavar="WEIGHT", help="also pull the student's features toward "
                   "the teacher's embeddings (cosine, through an adapter dropped after training), at this weight; "
                   "off by default (see the README's ablation)")
    p.add_argument("--clean-labels", action="store_true", help="train twice, the second time without the auto-labels "
                   "the first student confidently contradicts (confident learning; logged in data/label_issues.jsonl)")
    p.add_argument("--generate-model", metavar="ID_OR_PATH", help="a diffusers text-to-image pipeline: a hub id "
                   "already in the local cache (e.g. stabilityai/sd-turbo) or a folder; default: a small DDPM "
                   "trained on the labeled pool")
    p.add_argument("--generate-minutes", type=float, metavar="M", help="training budget of that DDPM (default 3)")
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


def parse_count(text: str) -> int:
    """'3.5M', '800k', '1500000' or '1_500_000' -> an int; ValueError otherwise."""
    t = text.strip().lower().replace("_", "").replace(",", "")
    scale = {"k": 10**3, "m": 10**6, "g": 10**9}.get(t[-1:], 1)
    value = float(t[:-1] if scale > 1 else t)
    if not 0 < value * scale < 1e15:  # also NaN and inf
        raise ValueError(text)
    return round(value * scale)


def _max_macs(args) -> dict:
    """offline_plan's max_macs from --max-macs, or nothing (its default)."""
    value = getattr(args, "max_macs", None)
    if value is None:
        return {}
    try:
        macs = parse_count(value)
    except ValueError:
        raise NanofactoryError(f"--max-macs takes a count of multiply-accumulates such as 3.5M, 800k or 1500000, "
                               f"not {value!r}.") from None
    if macs < 100_000:
        raise NanofactoryError(f"--max-macs {value} is below the smallest student (about 0.1M MACs at 28 px); "
                               "give 100k or more.")
    return {"max_macs": macs}


def _generate_step(spec, args):
    """The plan's generate step from --generate, --no-generate, --generate-model and --generate-minutes."""
    from pydantic import ValidationError

    from agent.plan import GenerateStep
    from agent.spec import describe_validation_error

    if args.generate and args.no_generate:
        raise NanofactoryError("Give --generate or --no-generate, not both.")
    fields: dict = {"mode": "off"} if args.no_generate else {}
    if args.generate:
        from agent.data import label_index

        names = [] if args.generate.strip().lower() == "all" else [c.strip() for c in args.generate.split(",") if c.strip()]
        known = [c.name for c in spec.classes]
        found = [label_index(n, known, other=False) for n in names]  # plural and case tolerant
        unknown = [n for n, i in zip(names, found) if i < 0]
        if unknown:
            raise NanofactoryError(f"--generate names {', '.join(map(repr, unknown))}, which is not a class; use "
                                   f"'all' or some of: {', '.join(known)}.")
        fields |= {"mode": "on", "classes": [known[i] for i in found]}
    if args.generate_model:
        path = Path(args.generate_model).expanduser()
        fields["text_to_image"] = {"model": str(path.resolve()) if path.exists() else args.generate_model}
    if args.generate_minutes is not None:
        fields["ddpm"] = {"budget_minutes": args.generate_minutes}
    try:
        return GenerateStep.model_validate(fields)
    except ValidationError as e:
        raise NanofactoryError(describe_validation_error(e, "generate options")) from None


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
    if getattr(args, "feature_distill", None) is not None and args.feature_distill < 0:
        raise NanofactoryError("--feature-distill takes a weight of 0 or more, e.g. 0.5.")
    train = TrainConfig(**{k: v for k, v in (("epochs", args.epochs),
                                            ("feature_weight", getattr(args, "feature_distill", None))) if v})
    train = train if train.model_fields_set else None
    from tools.search import SearchConfig

    if args.search_candidates < 10:
        raise NanofactoryError("--search-candidates needs at least 10 architectures.")
    search = SearchConfig(candidates=args.search_candidates) if args.search else None
    plan = offline_plan(spec, default_input(spec, *native_shape(pool)), teacher=teacher, train=train,
                        generate=_generate_step(spec, args), search=search, **_max_macs(args))
    plan = data_engine_options(plan, args)
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
        ("SRAM (planned arena)", f"{_fmt(m['sram_estimate_bytes'], 'kb')} of {_fmt(m['sram_bytes_budget'], 'kb')}"),
        ("MACs", _fmt(m["macs"], "int")),
        ("latency estimate", _fmt(m["latency_estimate_ms"], "ms")
         + (f" (budget {m['latency_budget_ms']:g} ms)" if m["latency_budget_ms"] else "")),
        ("build time", f"{m['timings_s']['total']:.0f} s"),
    ]
    c = m.get("compiled")
    if c:
        m4 = (c.get("arm") or {}).get("cortex-m4")
        rows[10:10] = [
            ("C library vs TFLite Micro", f"{_fmt(c['tflm_vs_c_bitexact'])} bit-exact ({c['runtime_samples']:,} inputs)"
             if c.get("tflm_vs_c_bitexact") is not None else "not checked"),
            ("arena ours / TFLM", f"{c['arena_bytes']:,} B / {c['tflm_arena_head_bytes']:,} B"
             if c.get("tflm_arena_head_bytes") else f"{c['arena_bytes']:,} B"),
            ("Cortex-M4 text / bss", f"{m4['text']:,} B / {m4['bss']:,} B" if m4 else "arm-none-eabi-gcc not installed"),
        ]
    width = max(len(k) for k, _ in rows)
    print("\n".join(f"{k:<{width}}  {v}" for k, v in rows))
    print(f"report: {run.dir / 'report.html'}")
    print(f"model:  {run.dir / 'model_int8.onnx'}")
    if m.get("compiled"):
        print(f"C/tflite: {m['compiled']['dir']}")
    syn = m.get("synthetic")
    if syn and syn.get("classes"):
        print(f"synthetic: {_synthetic_line(syn)}")


def _synthetic_line(s: dict) -> str:
    if s.get("unavailable"):
        return f"none ({s['unavailable']})"
    line = f"kept {s['kept']} of {s['generated']} generated for {', '.join(s['classes'])} (gate rejected " \
           f"{_fmt(s['rejection_rate'])})"
    t, a = s.get("training") or {}, s.get("ablation") or {}
    if a:
        line += f"; test accuracy with {_fmt(a['fp32_accuracy_with'])}, without {_fmt(a['fp32_accuracy_without'])}"
    if t:
        line += f"; shipped {t['shipped']}"
    return line


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
    from agent.context import Context, LLMSettings
    from agent.runs import default_root

    llm = LLMSettings.from_env(args.llm_provider, args.llm_model, args.llm_base_url)
    data = {k: v for k, v in {"images": args.images, "examples": args.examples, "test": args.test}.items() if v}
    # folders the user named on the command line are theirs to use; the model may not reach beyond them
    trusted = [Path(v).expanduser().resolve() for v in data.values() if v != "fashion-mnist"]
    runs_dir = args.runs_dir or default_root()
    if not (args.terminal or args.request):
        return _chat_web(args, runs_dir, llm, data, trusted)
    from agent.cli_chat import run_chat

    ctx = Context(runs_dir=runs_dir, llm=llm, max_steps=args.max_steps,
                  epochs=args.epochs, show_bars=not args.quiet, extra_roots=trusted)
    return run_chat(ctx, args.request, data, args.thread)


def _load_app():
    """app.py: importable when run from the checkout, else loaded from next to the agent package."""
    import importlib.util

    try:
        import app
        return app
    except ModuleNotFoundError:
        path = Path(__file__).resolve().parent.parent / "app.py"
        if not path.is_file():
            raise NanofactoryError("The web app (app.py) is not installed here; run from the Nanofactory checkout, "
                                   "or use `nanofactory chat --terminal`.") from None
        spec = importlib.util.spec_from_file_location("app", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module


def _chat_web(args, runs_dir: Path, llm, data: dict, trusted: list[Path]) -> int:
    import os

    from agent.web import WebApp, WebConfig

    if args.thread:
        raise NanofactoryError("--thread resumes a conversation in the terminal; add --terminal.")
    auth = args.auth or os.environ.get("NANOFACTORY_AUTH")
    if auth is not None and (":" not in auth or not auth.split(":", 1)[0] or not auth.split(":", 1)[1]):
        raise NanofactoryError("--auth takes USER:PASS (both non-empty), e.g. --auth alice:s3cret.")
    if args.share and not auth:
        _say("note: --share makes the page public; consider --auth USER:PASS.")
    web = WebApp(WebConfig(runs_dir=runs_dir, llm=llm, epochs=args.epochs, max_steps=args.max_steps, data=data,
                           extra_roots=trusted))
    try:
        _load_app().launch(web, host=args.host, port=args.port, share=args.share,
                           auth=tuple(auth.split(":", 1)) if auth else None, open_browser=not args.no_browser)
    except KeyboardInterrupt:
        _say("stopped.")
    except OSError as e:  # the port is taken, or the address cannot be bound
        raise NanofactoryError(f"Cannot serve on {args.host}:{args.port or 7860}: {e}. Pick another --port.") from None
    return 0


def cmd_run(args) -> int:
    from agent.pipeline import replay
    from agent.runs import RunStore

    run, metrics = replay(args.plan, RunStore(args.runs_dir), show_bars=not args.quiet)
    _print_summary(run, metrics)
    return 0


def _run_dir(run: str, runs_dir: Path | None) -> Path:
    from agent.runs import RunStore

    path = Path(run).expanduser()
    if path.is_dir():
        return path
    store = RunStore(runs_dir)
    folder = store.path(run)
    if not folder.is_dir():
        raise NanofactoryError(f"No run {run!r} under {store.root}; list them with `nanofactory runs`.")
    return folder


def cmd_compile(args) -> int:
    import numpy as np

    from compilers.build import compile_onnx

    if args.onnx:
        if args.calibration is None:
            raise NanofactoryError("--onnx needs --calibration FILE.npy: a few hundred representative inputs "
                                   "(N, C, H, W), preprocessed as the model expects.")
        if not args.calibration.is_file():
            raise NanofactoryError(f"Calibration file {args.calibration} does not exist.")
        calib = np.load(args.calibration)
        out = args.out or args.onnx.with_suffix("")
        compiled = compile_onnx(args.onnx, calib.astype(np.float32), out, name=args.onnx.stem)
    else:
        if not args.run:
            raise NanofactoryError("Which model? Pass a run id (from `nanofactory runs`) or --onnx FILE.")
        from agent.pipeline import open_run
        from agent.runs import RunStore
        from agent.stage_compile import calibration_inputs
        from agent.stages import StageContext

        folder = _run_dir(args.run, args.runs_dir)
        store = RunStore(folder.parent)
        ctx = StageContext(run=open_run(store, folder.name), show_bars=False)
        if not (folder / "model.onnx").is_file():
            raise NanofactoryError(f"Run {folder.name} has no model.onnx yet; finish it with "
                                   f"`nanofactory build --resume {folder.name}`.")
        compiled = compile_onnx(folder / "model.onnx", calibration_inputs(ctx, 512), args.out or folder / "compiled",
                                name=folder.name)
    s = compiled.summary
    print(f"compiled {s['ops']} ops, {s['macs']:,} MACs, weights {s['weight_bytes']:,} B, "
          f"arena {s['arena_bytes']:,} B (exact)")
    print(f"files: {compiled.dir / 'model.tflite'}, {compiled.dir / 'c'}/")
    return 0


def cmd_verify(args) -> int:
    from agent.pipeline import open_run
    from agent.runs import RunStore
    from agent.stage_compile import evaluation_inputs
    from agent.stages import StageContext
    from compilers.build import load_compiled
    from compilers.verify import verify
    from knowledge.io import write_json_atomic

    folder = _run_dir(args.run, args.runs_dir)
    samples = None if args.samples == "all" else int(args.samples) if args.samples.isdigit() else None
    if samples is None and args.samples != "all":
        raise NanofactoryError(f"--samples takes a number or 'all', not {args.samples!r}.")
    compiled = load_compiled(folder / "compiled")
    ctx = StageContext(run=open_run(RunStore(folder.parent), folder.name), show_bars=False)
    x, truth = evaluation_inputs(ctx)
    _say(f"verifying {folder.name} on {len(x):,} inputs ...")
    figures = verify(compiled, x, labels=truth, fp32_onnx=folder / "model.onnx", int8_onnx=folder / "model_int8.onnx",
                     sanitize=args.sanitize, runtime_samples=samples)
    write_json_atomic(compiled.dir / "verify.json", figures)
    for key, value in figures.items():
        print(f"{key:<34} {value}")
    exact = [figures.get(k) for k in ("c_vs_reference_bitexact", "tflm_vs_c_bitexact", "litert_vs_c_bitexact")]
    return 0 if all(v == 1.0 for v in exact if v is not None) else 1


COMMANDS = {"review": cmd_review, "find": cmd_find, "compile": cmd_compile, "verify": cmd_verify, "chat": cmd_chat, "run": cmd_run, "build": cmd_build, "demo": cmd_demo, "spec": cmd_spec, "runs": cmd_runs, "devices": cmd_devices}


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
