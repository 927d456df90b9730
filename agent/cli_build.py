"""``nanofactory build`` and ``nanofactory demo``: command-line options into a spec and a plan, the run,
and the summary printed after it (``nanofactory review --retrain`` prints the same)."""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

from knowledge.devices import core_name
from knowledge.errors import NanofactoryError


def finite_float(text: str) -> float:
    """An argparse type: a number, not inf or nan (which pass every >= check and are saved as null)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"takes a number, e.g. 0.5; got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"takes a finite number, e.g. 0.5; got {text!r}")
    return value


def positive_int(text: str) -> int:
    """An argparse type: a whole number of 1 or more."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"takes a whole number of 1 or more; got {text!r}")
    return value


def seed_int(text: str) -> int:
    """An argparse type: a seed from 0 to 2^32 - 1, what every seeded library here takes."""
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value < 2**32:
        raise argparse.ArgumentTypeError(f"takes a whole number from 0 to 4294967295; got {text!r}")
    return value


def data_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--images", metavar="DIR", help="folder of unlabeled images (searched recursively), "
                   "or 'fashion-mnist' for the packaged Fashion-MNIST pool")
    p.add_argument("--examples", metavar="DIR", type=Path,
                   help="a few example images per class: one subfolder per class name (an 'other' subfolder is allowed)")
    p.add_argument("--test", metavar="DIR", help="labeled test images, one subfolder per class "
                   "(or 'fashion-mnist'); without it, accuracy is measured on auto-labeled validation data")
    p.add_argument("--pool-limit", type=positive_int, metavar="N", help="use at most N pool images")


def build_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--runs-dir", type=Path, help="where runs live (default ./runs or $NANOFACTORY_RUNS)")
    p.add_argument("--epochs", type=int, help="training epochs (default 8)")
    p.add_argument("--seed", type=seed_int, help="random seed (default: the spec's, 0)")
    p.add_argument("--teacher", help="teacher registry name: efficientnet-lite (default, offline) or clip")
    p.add_argument("--teacher-model", metavar="ID_OR_PATH",
                   help="teacher weights: a hub id or local folder (clip), or efficientnet-lite0/1/2")
    p.add_argument("--teacher-device", choices=["auto", "cpu", "cuda"], default="auto",
                   help="where the teacher embeds the pool (default auto: a GPU when one is visible)")
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
    p.add_argument("--balance", type=finite_float, metavar="RATIO", help="cap every class at RATIO x the smallest class "
                   "(diverse picks; 'other' keeps its hard negatives first)")
    p.add_argument("--max-samples", type=int, metavar="N", help="train on at most N pool images, chosen to cover the "
                   "pool (k-center)")
    p.add_argument("--feature-distill", type=finite_float, metavar="WEIGHT", help="also pull the student's features toward "
                   "the teacher's embeddings (cosine, through an adapter dropped after training), at this weight; "
                   "off by default (see the README's ablation)")
    p.add_argument("--reverse-ce", type=finite_float, metavar="WEIGHT", help="weight of symmetric cross-entropy's reverse "
                   "term on the auto-labels: bounded, so labels the teacher got wrong pull less (default 3; 0 turns "
                   "it off; see the README's ablation)")
    p.add_argument("--clean-labels", action="store_true", help="train twice, the second time without the auto-labels "
                   "the first student confidently contradicts (confident learning; logged in data/label_issues.jsonl)")
    p.add_argument("--generate-model", metavar="ID_OR_PATH", help="a diffusers text-to-image pipeline: a hub id "
                   "already in the local cache (e.g. stabilityai/sd-turbo) or a folder; default: a small DDPM "
                   "trained on the labeled pool")
    p.add_argument("--generate-minutes", type=finite_float, metavar="M", help="training budget of that DDPM (default 3)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def _source(value: str | None, split: str = "train", limit: int | None = None):
    from agent.spec import PoolSource

    if value is None:
        return None
    if value == "fashion-mnist":
        return PoolSource(kind="fashion-mnist", split=split, limit=limit)
    return PoolSource(kind="folder", path=Path(value).expanduser().resolve(), limit=limit)


def data_spec(args):
    from agent.spec import DataSpec

    if not args.images:
        raise NanofactoryError("No images to learn from: pass --images DIR (a folder of your images) "
                               "or --images fashion-mnist, or run `nanofactory demo`.")
    return DataSpec(pool=[_source(args.images, limit=args.pool_limit)], **_data_updates(args))


def _data_updates(args) -> dict:
    """--examples and --test as DataSpec fields, for those given."""
    updates = {}
    if args.examples:
        updates["examples_dir"] = args.examples.expanduser().resolve()
    if args.test:
        updates["test"] = _source(args.test, split="test")
    return updates


def spec_from_args(args):
    from agent.parse import spec_from_request
    from agent.spec import DesignSpec

    if args.spec:
        if args.request:
            raise NanofactoryError("Give either a request or --spec FILE, not both.")
        spec = DesignSpec.load(args.spec)
        return spec.model_copy(update={"data": with_data_flags(spec.data, args)})
    if not args.request:
        raise NanofactoryError('Say what to build, e.g. nanofactory build "sort shirts and bags on an STM32F446" '
                               "--images DIR, or pass --spec FILE.")
    return spec_from_request(args.request, data_spec(args))


def with_data_flags(data, args):
    """A spec's DataSpec with the data flags given on the command line in place of its own (each flag its own
    field: --test alone keeps the spec's pool and examples; --pool-limit alone limits the spec's pool)."""
    updates = _data_updates(args)
    if args.images:
        updates["pool"] = [_source(args.images, limit=args.pool_limit)]
    elif args.pool_limit:
        updates["pool"] = [source.model_copy(update={"limit": args.pool_limit}) for source in data.pool]
    return data.model_copy(update=updates)


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


def generate_step(spec, args):
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
        from generators.text_to_image import TextToImageConfig, TextToImageGenerator

        fields["text_to_image"] = {"model": model_id_or_path(args.generate_model, "--generate-model")}
        # not a pipeline folder, or not in the cache: one sentence now, not a note at the end of the build
        TextToImageGenerator(TextToImageConfig(**fields["text_to_image"])).check()
    if args.generate_minutes is not None:
        fields["ddpm"] = {"budget_minutes": args.generate_minutes}
    try:
        return GenerateStep.model_validate(fields)
    except ValidationError as e:
        raise NanofactoryError(describe_validation_error(e, "generate options")) from None


def model_id_or_path(value: str, flag: str) -> str:
    """A model named on the command line: an existing local folder, resolved (so a resumed run finds it from
    anywhere), or a hub id ("name" or "org/name"). Something written as a path that is not there is one sentence
    now, before a run folder exists, instead of a hub error at the stage that loads it."""
    from knowledge.io import looks_like_path

    path = Path(value).expanduser()
    if path.exists():
        return str(path.resolve())
    if looks_like_path(value):
        raise NanofactoryError(f"{flag} {value}: no such folder; pass a model folder saved with save_pretrained, "
                               "or a hub id such as org/name when online.")
    return value


def budget_notes(spec) -> list[str]:
    """A line for each budget the request sets above what the device has: the build holds to the device's
    (tools.sizing.budget_limits), and says so rather than quietly using less than was asked for."""
    from knowledge.devices import get_device

    device, notes = get_device(spec.device), []
    for what, asked, has in (("flash", spec.budgets.flash_bytes, device.flash_bytes),
                             ("RAM", spec.budgets.sram_bytes, device.sram_bytes)):
        if asked and asked > has:
            notes.append(f"note: the request allows {asked / 1024:,.0f} KB of {what}, but the {device.name} has "
                         f"{has / 1024:,.0f} KB; the build holds to the {has / 1024:,.0f} KB.")
    return notes


def run_build(spec, args, store) -> dict:
    from agent.cli_data import data_engine_options
    from agent.data import load_examples, load_pool, native_shape
    from agent.pipeline import create_run
    from agent.plan import default_input, offline_plan
    from knowledge.pools import check_folder
    from knowledge.teachers import create_teacher
    from knowledge.teachers.base import TeacherConfig, torch_device
    from tools.train import TrainConfig

    if args.seed is not None:
        spec = spec.model_copy(update={"seed": args.seed})
    from_file = getattr(args, "spec", None)  # a folder the spec file names is not blamed on a flag
    pool = load_pool(spec, "--images" if getattr(args, "images", None) or not from_file else f"data.pool in {from_file}")
    load_examples(spec)
    if spec.data.test is not None and spec.data.test.kind == "folder":  # read after training; checked now
        check_folder(spec.data.test.path, "--test" if getattr(args, "test", None) or not from_file else f"data.test in {from_file}")
    for line in budget_notes(spec):
        say(line)
    teacher_model = model_id_or_path(args.teacher_model, "--teacher-model") if args.teacher_model else None
    teacher = TeacherConfig(name=args.teacher or "efficientnet-lite", model=teacher_model,
                            device=getattr(args, "teacher_device", None) or "auto")
    create_teacher(teacher)  # an unknown teacher or variant: one sentence now (construction loads nothing)
    if teacher.device == "cuda":
        torch_device(teacher)  # no GPU: one sentence before a run folder exists
    if args.epochs is not None and args.epochs < 1:
        raise NanofactoryError(f"--epochs takes 1 or more (the default is {TrainConfig().epochs}).")
    for flag, example in (("feature_distill", "0.5"), ("reverse_ce", "3")):
        if getattr(args, flag, None) is not None and getattr(args, flag) < 0:
            raise NanofactoryError(f"--{flag.replace('_', '-')} takes a weight of 0 or more, e.g. {example}.")
    train = TrainConfig(**{k: v for k, v in (("epochs", args.epochs),
                                            ("feature_weight", getattr(args, "feature_distill", None)),
                                            ("reverse_ce", getattr(args, "reverse_ce", None))) if v is not None})
    train = train if train.model_fields_set else None
    from tools.search import SearchConfig

    if args.search_candidates < 10:
        raise NanofactoryError("--search-candidates needs at least 10 architectures.")
    search = SearchConfig(candidates=args.search_candidates) if args.search else None
    plan = offline_plan(spec, default_input(spec, *native_shape(pool)), teacher=teacher, train=train,
                        generate=generate_step(spec, args), search=search, **_max_macs(args))
    plan = data_engine_options(plan, args)
    run = create_run(spec, plan, store)
    say(f"run {run.id}: {len(spec.classes)} classes{' + other' if spec.other else ''} on {spec.device}, "
         f"student {plan.step('train').student.name}")
    return execute_run(run, store, args)


def execute_run(run, store, args) -> dict:
    from agent.pipeline import execute

    def progress(stage: str, event: str) -> None:
        if event == "start":
            say(f"  {stage} ...")
        else:
            say(f"  {stage} done in {event.split()[1]} s")

    try:
        metrics = execute(run, store, progress, show_bars=not args.quiet)
    except KeyboardInterrupt:
        say(f"interrupted; nothing half-written. Continue with: nanofactory build --resume {run.id}")
        raise SystemExit(130)
    print_summary(run, metrics)
    return metrics


def say(text: str) -> None:
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


def print_summary(run, m: dict) -> None:
    from agent.metrics import library_rows, mean_f1, review_hint, weakest_class_text

    rows = [
        ("device", m["device"]),
        ("evaluated on", m["evaluated_on"]),
        ("teacher label accuracy", _fmt(m["teacher_label_accuracy"])),
        ("student fp32 accuracy", _fmt(m["student_fp32_test_accuracy"])),
        ("student int8 accuracy", _fmt(m["student_int8_test_accuracy"])),
        *([("accuracy floor", f"{_fmt(run.spec.budgets.accuracy_floor)}: " + (
            "met" if m.get("meets_accuracy_floor") else f"NOT met; answer the review (`nanofactory review {run.id} "
            "--retrain`), add examples, or lower the floor"))] if run.spec.budgets.accuracy_floor is not None else []),
        ("oracle int8 accuracy", _fmt(m["oracle_int8_test_accuracy"])),
        ("student / oracle", "—" if m["student_oracle_ratio"] is None else f"{m['student_oracle_ratio']:.3f}"),
        ("weakest class (int8)", weakest_class_text(m.get("per_class"))),
        ("mean F1 over the outputs", _fmt(mean_f1(m))),
        ("int8 / fp32 top-1 agreement", _fmt(m["int8_fp32_top1_agreement"])),
        ("weights (flash)", f"{_fmt(m['weight_bytes'], 'kb')} of {_fmt(m['flash_bytes_budget'], 'kb')}"),
        ("SRAM (planned arena)", f"{_fmt(m['sram_estimate_bytes'], 'kb')} of {_fmt(m['sram_bytes_budget'], 'kb')}"),
        *library_rows(m),
        ("MACs", _fmt(m["macs"], "int")),
        ("latency estimate", _fmt(m["latency_estimate_ms"], "ms")
         + (f" (budget {m['latency_budget_ms']:g} ms)" if m["latency_budget_ms"] else "")),
        *([("latency, this C library", (f"at least {_fmt(m['latency_floor_ms'], 'ms')} "
            f"({m['instructions_per_inference'] / 1e6:.2f} M instructions per inference on the emulated core)"))]
          if m.get("latency_floor_ms") else []),
        ("build time", f"{m['timings_s']['total']:.0f} s"),
    ]
    c = m.get("compiled")
    if c:
        m4 = (c.get("arm") or {}).get("cortex-m4")
        at = next(i for i, (k, _) in enumerate(rows) if k == "MACs")
        rows[at:at] = [
            ("C library vs TFLite Micro", f"{_fmt(c['tflm_vs_c_bitexact'])} bit-exact ({c['runtime_samples']:,} inputs)"
             if c.get("tflm_vs_c_bitexact") is not None else "not checked"),
            ("arena ours / TFLM", f"{c['arena_bytes']:,} B / {c['tflm_arena_head_bytes']:,} B"
             if c.get("tflm_arena_head_bytes") else f"{c['arena_bytes']:,} B"),
            ("Cortex-M4 text / bss", f"{m4['text']:,} B / {m4['bss']:,} B" if m4 else "arm-none-eabi-gcc not installed"),
        ]
        emulated = {k: v for k, v in (c.get("cortex_m") or {}).items() if isinstance(v, dict)}
        if emulated:
            rows.insert(at + 1, ("C library on Cortex-M (QEMU)", " · ".join(
                f"{core_name(core).removeprefix('Cortex-')} {_fmt(v['bitexact'])} bit-exact" for core, v in emulated.items())
                + f" ({min(v['inputs'] for v in emulated.values()):,} inputs)"))
        if c.get("frames"):
            f = c["frames"]
            rows.insert(at + 1, ("camera frames -> input (C)", f"{_fmt(f['frames_bitexact'])} bit-exact with training "
                                 f"({f['frames_checked']} frames, {', '.join(f.get('formats') or ['gray', 'rgb'])}; nf_io.h)"))
    width = max(len(k) for k, _ in rows)
    print("\n".join(f"{k:<{width}}  {v}" for k, v in rows))
    print(f"report: {run.dir / 'report.html'}")
    print(f"model:  {run.dir / 'model_int8.onnx'}")
    print(f"data:   {run.dir / 'data' / 'manifest.jsonl'} (every image's label; `nanofactory export {run.id} DIR` "
          "writes the labeled images as class folders)")
    if m.get("compiled"):
        print(f"C/tflite: {m['compiled']['dir']}")
        arduino = sorted(Path(m["compiled"]["dir"], "arduino").glob("*/library.properties"))
        if arduino:
            print(f"Arduino:  {arduino[0].parent} (its Selftest sketch checks the board)")
    syn = m.get("synthetic")
    if syn and syn.get("classes"):
        print(f"synthetic: {_synthetic_line(syn)}")
    hint = review_hint(m, run.id)
    if hint:
        print(hint)


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
