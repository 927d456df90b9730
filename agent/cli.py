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

from agent.cli_build import (
    build_options,
    data_args,
    data_spec,
    execute_run,
    positive_int,
    print_summary,
    run_build,
    say,
    spec_from_args,
    with_data_flags,
)
from agent.cli_data import cmd_export, cmd_find, cmd_predict, cmd_review
from agent.cli_help import HelpFormatter, finish
from knowledge.devices import core_name
from knowledge.errors import NanofactoryError

EPILOG = """examples:
  nanofactory demo
  nanofactory build "a pet-door camera that tells apart cats, dogs and everything else on an nRF52840" \\
      --images ~/pet-door-shots --examples ~/pet-door-examples
  nanofactory build --spec closet.yaml
  nanofactory spec "sort shirts, bags and everything else on an ESP32-S3 with 256K RAM"
"""


DEVICES_FILE_HELP = """your own board: describe it in a YAML file and pass it with --devices FILE (or set
NANOFACTORY_DEVICES=FILE); a request, a spec or the web page can then name it:

  devices:
    - name: Teensy 4.1
      core: Cortex-M7          # Cortex-M0+, M4 and M7 are emulated: the build measures the
      clock_mhz: 600           #   library's latency floor and stack there
      sram: 512 KB             # what the model may use (here the tightly coupled RAM)
      flash: 7936 KB
      aliases: [teensy41]
    - name: nRF5340
      core: Cortex-M33
      clock_mhz: 128
      sram: 512 KB
      flash: 1 MB
      macs_per_cycle: 0.4      # needed for other cores: int8 MACs per cycle a good runtime reaches

A run records its board in design.json, so it resumes and replays without the file.
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="nanofactory", description="Design a tiny int8 image classifier for a "
                                     "microcontroller from a plain-language request and unlabeled images.",
                                     epilog=EPILOG, formatter_class=HelpFormatter)
    parser.add_argument("-v", "--verbose", action="store_true", help="log each step")
    parser.add_argument("--devices", metavar="FILE", help="a YAML file describing boards the catalog lacks (or set "
                        "$NANOFACTORY_DEVICES); `nanofactory devices --help` shows the format")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    b = sub.add_parser("build", help="build a model from a request, a spec file, or resume a run",
                       description="Label the pool with the teacher, train and distil the student, quantize to int8, "
                       "verify, and write runs/<id>/ with model_int8.onnx, metrics.json and report.html.")
    b.add_argument("request", nargs="?", help="what to build, in plain words (device, classes, budgets)")
    b.add_argument("--spec", type=Path, help="a saved spec (.json or .yaml) instead of a request")
    b.add_argument("--resume", metavar="RUN_ID", help="continue an interrupted run from its last finished stage")
    data_args(b)
    build_options(b)

    d = sub.add_parser("demo", help="the smart-closet demo: 5 examples per class, unlabeled Fashion-MNIST, STM32F446",
                       description="Builds the demo end to end and prints a summary; `make demo` runs this.")
    d.add_argument("--pool-limit", type=positive_int, metavar="N", help="use at most N Fashion-MNIST train images")
    build_options(d)

    s = sub.add_parser("spec", help="print the spec a request turns into (exit 2 with a question if incomplete)")
    s.add_argument("request")
    data_args(s)
    s.add_argument("--save", type=Path, metavar="FILE", help="also write it to FILE (.json or .yaml)")

    r = sub.add_parser("runs", help="list past runs, `runs show RUN_ID` for one, `runs compare A B` side by side",
                       description="Lists past runs. `show RUN_ID` prints one run's record and metrics (JSON); "
                       "`compare A B [C ...]` puts runs side by side, each accuracy with its change from the "
                       "first run in points: what a review round (`nanofactory review RUN --retrain`), a budget or "
                       "a search changed. `remove A [B ...]` deletes runs and their folders (asks first; --yes "
                       "does not).")
    r.add_argument("action", nargs="?", choices=["show", "compare", "remove"])
    r.add_argument("run_id", nargs="*", help="run ids (from `nanofactory runs`)")
    r.add_argument("--yes", action="store_true", help="with remove: do not ask")
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
    c.add_argument("--max-steps", type=positive_int, default=24, help="model turns per message before it stops (default 24)")
    c.add_argument("--runs-dir", type=Path, help="where runs and saved conversations live (default ./runs)")
    c.add_argument("--epochs", type=positive_int, help="training epochs (default 8)")
    c.add_argument("--quiet", action="store_true", help="no progress bars")

    p = sub.add_parser("run", help="replay a saved plan (a run's design.json, or YAML with spec and plan) without an LLM")
    p.add_argument("plan", type=Path)
    p.add_argument("--runs-dir", type=Path, help="where runs live (default ./runs or $NANOFACTORY_RUNS)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")

    k = sub.add_parser("compile", help="compile a run's model (or any ONNX CNN) to an int8 C library and .tflite",
                       description="Reads ONNX (opset >= 13), quantizes it to int8 with TFLite's conventions on "
                       "calibration data, plans the tensor arena, and writes model.tflite, a C99 library in c/ "
                       "(model.h, model.c, kernels, a self-test, host harnesses, Makefile, CMakeLists.txt), the "
                       "same as an Arduino library in arduino/ (with a Selftest sketch), and compile.json with the "
                       "exact arena size. A run's model also gets labels.txt and c/nf_io.h, which turns camera "
                       "frames into its inputs exactly as training prepared its images.")
    k.add_argument("run", nargs="?", help="run id or run folder (uses its model.onnx and training data)")
    k.add_argument("--onnx", type=Path, metavar="FILE", help="compile this ONNX model instead of a run's")
    k.add_argument("--calibration", type=Path, metavar="FILE.npy",
                   help="with --onnx: representative float inputs, shape (N, C, H, W), preprocessed as the model expects")
    k.add_argument("--out", type=Path, metavar="DIR", help="output folder (default RUN/compiled, or next to --onnx)")
    k.add_argument("--runs-dir", type=Path, help="where runs live (default ./runs or $NANOFACTORY_RUNS)")

    v = sub.add_parser("verify", help="check a compiled run: C vs numpy reference, TFLite Micro, LiteRT; sizes; latency",
                       description="Builds the C library with gcc -O2 -Wall -Wextra -Werror, runs it on the run's "
                       "test inputs and compares with the numpy int8 reference, TFLite Micro and LiteRT bit for bit; "
                       "reports the arena against TFLM's, Cortex-M4/M7/M0+ sizes, int8 accuracy and host latency, and on "
                       "emulated Cortex-M4, M7 and M0+ cores (QEMU) bit-exactness, instructions per inference and "
                       "per layer, and the stack an inference uses.")
    v.add_argument("run", help="run id or run folder")
    v.add_argument("--samples", default="2000", metavar="N|all", help="inputs run through TFLM and LiteRT (default 2000)")
    v.add_argument("--sanitize", action="store_true", help="build with AddressSanitizer and UBSan")
    v.add_argument("--runs-dir", type=Path, help="where runs live (default ./runs or $NANOFACTORY_RUNS)")

    sub.add_parser("devices", help="the device catalog: core, clock, SRAM, flash, int8 MAC/cycle",
                   description="Lists the boards a request can name: the catalog, and those of a devices file.",
                   epilog=DEVICES_FILE_HELP)
    from agent import cli_data

    cli_data.add_parsers(sub)
    for command in sub.choices.values():  # after the command too: `nanofactory build ... --devices boards.yaml`
        command.add_argument("--devices", metavar="FILE", default=argparse.SUPPRESS,
                             help="a YAML file describing boards the catalog lacks (or set $NANOFACTORY_DEVICES)")
    finish(sub.choices)
    return parser


def cmd_build(args) -> int:
    from agent.pipeline import open_run
    from agent.runs import RunStore

    store = RunStore(args.runs_dir)
    if args.resume:
        changed = _flags_given(args, ("resume", "runs_dir", "quiet", "verbose", "command"))
        if changed:
            raise NanofactoryError(
                f"--resume finishes {args.resume} with the settings it was made with, so {', '.join(changed)} "
                "would be ignored; start a new build with them instead (or `nanofactory review RUN --retrain`).")
        folder = Path(args.resume).expanduser()
        if (folder / "design.json").is_file():  # a run folder rather than an id: its parent is the store
            store, args.resume = RunStore(folder.resolve().parent), folder.resolve().name
        run = open_run(store, args.resume)
        done = run.finished_stages()
        say(f"resuming {run.id}; finished: {', '.join(done) or 'nothing yet'}")
        execute_run(run, store, args)
        return 0
    run_build(spec_from_args(args), args, store)
    return 0


def _flags_given(args, ignore: tuple[str, ...]) -> list[str]:
    """The options (and a request) on the command line that differ from the parser's defaults."""
    defaults = vars(build_parser().parse_args([args.command]))
    return ["a request" if name == "request" else f"--{name.replace('_', '-')}"
            for name, value in vars(args).items() if name not in ignore and value != defaults.get(name)]


def cmd_demo(args) -> int:
    from agent.demo import DEMO_REQUEST, demo_spec
    from agent.runs import RunStore

    store = RunStore(args.runs_dir)
    say(f'demo request: "{DEMO_REQUEST}"')
    spec = demo_spec(store.root, pool_limit=args.pool_limit, seed=args.seed or 0)
    args.seed = None
    run_build(spec, args, store)
    return 0


def cmd_spec(args) -> int:
    from agent.parse import spec_from_request
    from agent.spec import DataSpec, PoolSource

    if args.images:
        data = data_spec(args)
    else:  # a spec to edit or build later with --images; its pool says which images it would use meanwhile
        data = with_data_flags(DataSpec(pool=[PoolSource(kind="fashion-mnist")]), args)
        say("note: no --images, so the spec's pool is Fashion-MNIST; build it on your images with "
            "`nanofactory build --spec FILE --images DIR`.")
    for flag, source in (("--images", data.pool[0]), ("--test", data.test)):
        if source is not None and source.kind == "folder" and not Path(source.path).is_dir():
            raise NanofactoryError(f"{flag} {source.path} is not a folder; pass the folder that holds the images.")
    if data.examples_dir is not None and not Path(data.examples_dir).is_dir():
        raise NanofactoryError(f"--examples {data.examples_dir} is not a folder; pass one with a subfolder per class.")
    spec = spec_from_request(args.request, data)
    if args.save:
        spec.save(args.save)
    print(spec.to_json())
    return 0


def cmd_runs(args) -> int:
    from agent.runs import RunStore

    store = RunStore(args.runs_dir)
    if args.action == "show":
        if len(args.run_id) != 1:
            raise NanofactoryError("Which run? Use `nanofactory runs show RUN_ID` (ids from `nanofactory runs`)"
                                   + ("; `runs compare A B` shows several." if args.run_id else "."))
        run_id = args.run_id[0]
        if (Path(run_id).expanduser() / "design.json").is_file():  # a run folder rather than an id
            folder = Path(run_id).expanduser().resolve()
            store, run_id = RunStore(folder.parent), folder.name
        record = store.get(run_id)
        print(json.dumps({"run": record.__dict__, "path": str(store.path(run_id)),
                          "metrics": store.metrics(run_id)}, indent=2, default=str))
        return 0
    if args.action == "compare":
        from agent.metrics import comparison_rows

        if len(args.run_id) < 2:
            raise NanofactoryError("Which runs? Use `nanofactory runs compare RUN_A RUN_B` (ids from `nanofactory runs`).")
        runs = []
        for run_id in args.run_id:
            store.path(run_id)  # an unknown id: one sentence with the recent ones
            metrics = store.metrics(run_id)
            if not metrics:
                raise NanofactoryError(f"Run {run_id} has no metrics yet; finish it with "
                                       f"`nanofactory build --resume {run_id}`.")
            runs.append((run_id, metrics))
        rows = comparison_rows(runs)
        widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
        for row in rows:
            print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())
        return 0
    if args.action == "remove":
        return _remove_runs(store, args.run_id, args.yes)
    if args.run_id:
        raise NanofactoryError("`nanofactory runs` lists runs; use `runs show RUN_ID`, `runs compare A B` or "
                               "`runs remove RUN_ID`.")
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


def _remove_runs(store, run_ids: list[str], yes: bool) -> int:
    if not run_ids:
        raise NanofactoryError("Which runs? Use `nanofactory runs remove RUN_ID [RUN_ID ...]` (ids from `nanofactory runs`).")
    for run_id in run_ids:
        store.path(run_id)  # every id known before anything is deleted
    if not yes:
        if not sys.stdin.isatty():
            raise NanofactoryError("Removing runs deletes their folders; add --yes to remove them without being asked.")
        what = f"run {run_ids[0]} and its folder" if len(run_ids) == 1 else f"{len(run_ids)} runs and their folders"
        answer = input(f"Delete {what} under {store.root}? [y/N] ")
        if answer.strip().lower() not in ("y", "yes"):
            print("nothing removed")
            return 0
    freed = 0
    for run_id in dict.fromkeys(run_ids):
        freed += store.remove(run_id)
        print(f"removed {run_id}")
    print(f"{freed / 2**20:.1f} MB freed")
    return 0


def _size(n: int) -> str:
    return f"{n // 1024**2:,} MB" if n >= 10 * 1024**2 else f"{n // 1024:,} KB"


def cmd_devices(args) -> int:
    from knowledge.devices import list_devices

    print(f"{'device':<22} {'core':<24} {'MHz':>5} {'SRAM':>9} {'flash':>9} {'MAC/cycle':>9}  measured on")
    devices = list_devices()
    for d in devices:
        print(f"{d.name:<22} {d.core:<24} {d.clock_mhz:>5g} {_size(d.sram_bytes):>9} "
              f"{_size(d.flash_bytes):>9} {d.macs_per_cycle:>9.2f}  "
              + (f"emulated {core_name(d.emulated_core)}" if d.emulated_core else "-")
              + (f"  (from {d.origin})" if d.origin else ""))
    if not any(d.origin for d in devices):
        print("\nYour own board: describe it in a YAML file and pass --devices FILE; `nanofactory devices --help` "
              "shows how.")
    print("\nverify runs every build's C library on emulated Cortex-M4, M7 and M0+ cores (QEMU, when installed). For a device "
          "with one of them the build reports the library's latency floor and the flash and RAM it takes, measured "
          "there, beside the estimates from MACs and the arena; for the others, the estimates.")
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
        say("note: --share makes the page public; consider --auth USER:PASS.")
    web = WebApp(WebConfig(runs_dir=runs_dir, llm=llm, epochs=args.epochs, max_steps=args.max_steps, data=data,
                           extra_roots=trusted))
    try:
        _load_app().launch(web, host=args.host, port=args.port, share=args.share,
                           auth=tuple(auth.split(":", 1)) if auth else None, open_browser=not args.no_browser)
    except KeyboardInterrupt:
        say("stopped.")
    except OSError as e:  # the port is taken, or the address cannot be bound
        raise NanofactoryError(f"Cannot serve on {args.host}:{args.port or 7860}: {e}. Pick another --port.") from None
    finally:
        web.close()
    return 0


def cmd_run(args) -> int:
    from agent.pipeline import replay
    from agent.runs import RunStore

    run, metrics = replay(args.plan, RunStore(args.runs_dir), show_bars=not args.quiet)
    print_summary(run, metrics)
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
        if args.run:
            raise NanofactoryError(f"Give a run or --onnx FILE, not both ({args.run} and {args.onnx}).")
        if not args.onnx.is_file():
            raise NanofactoryError(f"No ONNX model at {args.onnx}; pass the path of a .onnx file.")
        if args.calibration is None:
            raise NanofactoryError("--onnx needs --calibration FILE.npy: a few hundred representative inputs "
                                   "(N, C, H, W), preprocessed as the model expects.")
        if not args.calibration.is_file():
            raise NanofactoryError(f"Calibration file {args.calibration} does not exist.")
        try:
            calib = np.load(args.calibration)
        except (ValueError, OSError, EOFError):
            raise NanofactoryError(f"{args.calibration} is not a numeric .npy array; save the inputs with "
                                   "numpy.save (shape (N, C, H, W)).") from None
        if not isinstance(calib, np.ndarray):  # an .npz archive
            raise NanofactoryError(f"{args.calibration} is an .npz archive, not one array; save the inputs with "
                                   "numpy.save (shape (N, C, H, W)).")
        if not np.issubdtype(calib.dtype, np.number):
            raise NanofactoryError(f"{args.calibration} holds {calib.dtype} data, not numbers; save float inputs "
                                   "with numpy.save (shape (N, C, H, W)).")
        if not np.isfinite(calib).all():
            raise NanofactoryError(f"{args.calibration} holds NaN or infinite values; calibrate on real inputs.")
        out = args.out or args.onnx.with_suffix("")
        compiled = compile_onnx(args.onnx, calib.astype(np.float32), out, name=args.onnx.stem)
    else:
        if not args.run:
            raise NanofactoryError("Which model? Pass a run id (from `nanofactory runs`) or --onnx FILE.")
        if args.calibration is not None:
            raise NanofactoryError("--calibration is for --onnx; a run calibrates on its own pool images.")
        if args.run.endswith(".onnx"):
            raise NanofactoryError(f"{args.run} is an ONNX file, not a run; compile it with "
                                   f"`nanofactory compile --onnx {args.run} --calibration FILE.npy`.")
        from agent.pipeline import open_run
        from agent.runs import RunStore
        from agent.stage_compile import calibration_inputs, image_input
        from agent.stages import StageContext

        folder = _run_dir(args.run, args.runs_dir)
        store = RunStore(folder.parent)
        ctx = StageContext(run=open_run(store, folder.name), show_bars=False)
        if not (folder / "model.onnx").is_file():
            raise NanofactoryError(f"Run {folder.name} has no model.onnx yet; finish it with "
                                   f"`nanofactory build --resume {folder.name}`.")
        compiled = compile_onnx(folder / "model.onnx", calibration_inputs(ctx, 512), args.out or folder / "compiled",
                                name=folder.name, image=image_input(ctx))
    s = compiled.summary
    print(f"compiled {s['ops']} ops, {s['macs']:,} MACs, weights {s['weight_bytes']:,} B, "
          f"arena {s['arena_bytes']:,} B (exact)")
    arduino = sorted((compiled.dir / "arduino").glob("*/library.properties"))
    print(f"files: {compiled.dir / 'model.tflite'}, {compiled.dir / 'c'}/"
          + (f", {arduino[0].parent}/ (Arduino)" if arduino else ""))
    return 0


def print_layer_floors(layers: list[dict], instructions: list[int], device) -> None:
    """Each layer's instructions on the emulated core beside its MACs, and the floor they set on the device."""
    if len(layers) != len(instructions):
        return
    print(f"\nper layer on the emulated {core_name(device.emulated_core)} "
          f"(floor: at {device.clock_mhz:g} MHz, {device.issue_width} per cycle)")
    width = max(len(row["name"]) for row in layers)
    print(f"{'#':>3}  {'layer':<{width}}  {'kind':<8} {'MACs':>10} {'instructions':>13} {'per MAC':>8} {'floor ms':>9}")
    for i, (row, n) in enumerate(zip(layers, instructions)):
        per_mac = f"{n / row['macs']:.1f}" if row["macs"] else "-"
        print(f"{i:>3}  {row['name']:<{width}}  {row['kind']:<8} {row['macs']:>10,} {n:>13,} {per_mac:>8} "
              f"{device.latency_floor_ms(n):>9.2f}")


def cmd_verify(args) -> int:
    from agent.metrics import library_footprint
    from agent.pipeline import open_run
    from agent.runs import RunStore
    from agent.stage_compile import evaluation_inputs
    from agent.stages import StageContext
    from compilers.build import load_compiled
    from compilers.verify import verify
    from knowledge.io import write_json_atomic

    folder = _run_dir(args.run, args.runs_dir)
    samples = None if args.samples == "all" else int(args.samples) if args.samples.isdigit() else 0
    if samples == 0:
        raise NanofactoryError(f"--samples takes a number of 1 or more, or 'all'; got {args.samples!r}.")
    compiled = load_compiled(folder / "compiled")
    ctx = StageContext(run=open_run(RunStore(folder.parent), folder.name), show_bars=False)
    x, truth = evaluation_inputs(ctx)
    say(f"verifying {folder.name} on {len(x):,} inputs ...")
    figures = verify(compiled, x, labels=truth, fp32_onnx=folder / "model.onnx", int8_onnx=folder / "model_int8.onnx",
                     sanitize=args.sanitize, runtime_samples=samples)
    write_json_atomic(compiled.dir / "verify.json", figures)
    for key, value in figures.items():
        print(f"{key:<34} {value}")
    device = ctx.device
    emulated = (figures.get("cortex_m") or {}).get(device.emulated_core or "")
    if isinstance(emulated, dict) and emulated.get("instructions"):
        core = core_name(device.emulated_core)
        print(f"{'latency floor, ' + device.name:<34} {device.latency_floor_ms(emulated['instructions']):.1f} ms "
              f"({emulated['instructions']:,} instructions per inference on the emulated {core}, at most "
              f"{device.issue_width} per cycle at {device.clock_mhz:g} MHz)")
        library = library_footprint(figures, device)
        if library:
            frame = emulated.get("frame_stack_bytes")
            print(f"{'RAM, this C library':<34} {library['ram_bytes']:,} B "
                  f"(arena {library['ram_bytes'] - library['stack_bytes']:,} B + at most {library['stack_bytes']:,} B of "
                  f"stack per inference on the emulated {core}"
                  + (f"; converting a camera frame takes {frame:,} B of stack" if frame else "") + ")")
        print_layer_floors(compiled.summary["layers"], emulated.get("layer_instructions") or [], device)
    exact = [figures.get(k) for k in ("c_vs_reference_bitexact", "tflm_vs_c_bitexact", "litert_vs_c_bitexact")]
    exact.append((figures.get("frames") or {}).get("frames_bitexact"))
    for v in (figures.get("cortex_m") or {}).values():
        if isinstance(v, dict):
            exact += [v.get("bitexact"), v.get("frames_bitexact")]
    return 0 if all(v == 1.0 for v in exact if v is not None) else 1


COMMANDS = {"review": cmd_review, "find": cmd_find, "predict": cmd_predict, "export": cmd_export, "compile": cmd_compile, "verify": cmd_verify, "chat": cmd_chat, "run": cmd_run, "build": cmd_build, "demo": cmd_demo, "spec": cmd_spec, "runs": cmd_runs, "devices": cmd_devices}


def _terminated_in(pid: int):
    """A SIGTERM handler for the process ``pid``: `kill` or a job scheduler's stop marks the run
    interrupted, as Ctrl-C does. A forked child (a library's worker pool) that inherited it dies
    as SIGTERM's default would have it, without running Python cleanup in a copy of our threads' state."""
    import os
    import signal

    def handler(signum, frame):
        if os.getpid() != pid:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGTERM)
            return
        raise KeyboardInterrupt
    return handler


def main(argv: list[str] | None = None) -> int:
    import os
    import signal
    import threading

    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, _terminated_in(os.getpid()))
    try:
        if getattr(args, "devices", None):
            from knowledge.devices import DEVICES_ENV, load_device_file

            load_device_file(args.devices)  # a bad file is one sentence now, not in the middle of a build
            os.environ[DEVICES_ENV] = str(Path(args.devices).expanduser().resolve())
        return COMMANDS[args.command](args)
    except NanofactoryError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code
    except OSError as e:
        if e.filename is None or args.verbose:  # not about a path the user can fix: the traceback helps more
            raise
        print(f"error: cannot use {e.filename}: {e.strerror or e}; pass another path.", file=sys.stderr)
        return 1
    finally:
        if previous is not None:  # main() called in-process (tests, the app) leaves the caller's handler as it was
            signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    sys.exit(main())
