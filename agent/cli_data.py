"""``nanofactory review``, ``find``, ``predict`` and ``export``: the data engine from the terminal."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from agent.cli_build import print_summary, say
from knowledge.errors import NanofactoryError


def add_parsers(sub) -> None:
    from agent.review import REFRESH_EVERY

    r = sub.add_parser(
        "review", help="label the pool images that would help most, then retrain on them (active learning)",
        description="Shows the images the teacher is least sure of, picked to be diverse, alternating with spot "
        "checks (pool images drawn at random, which keep the labeler's picture of the pool unbiased and measure "
        "how often its labels are right), one at a time, with the teacher's three best guesses; answer with 1-3, "
        "a class name, n (none of these), s (skip) or q (quit). Every answer is saved at once in "
        "RUN/data/human_labels.json. Every --refresh answers the pool is labeled again with the answers so far "
        "(seconds, from the run's cached embeddings) and the next questions are picked from those labels. "
        "--retrain then builds a new run whose labels use them.",
        epilog="examples:\n  nanofactory review shirt-20261121-1200 --budget 30\n"
        "  nanofactory review shirt-20261121-1200 --retrain\n"
        "  nanofactory review shirt-20261121-1200 --oracle --budget 200 --retrain   # benchmarks: hidden labels answer")
    r.add_argument("run", help="run id (or run folder)")
    r.add_argument("--budget", type=int, default=20, metavar="N", help="how many images to ask about (default 20)")
    r.add_argument("--refresh", type=int, default=REFRESH_EVERY, metavar="N",
                   help=f"questions between re-rankings of the queue with the answers (default {REFRESH_EVERY}; "
                   "0: rank once, from the run's labels)")
    r.add_argument("--oracle", action="store_true",
                   help="answer from the pool's hidden labels instead of asking (Fashion-MNIST; for benchmarks)")
    r.add_argument("--retrain", action="store_true", help="afterwards, build a new run that trains on the human labels")
    r.add_argument("--runs-dir", type=Path, help="where runs live (default ./runs or $NANOFACTORY_RUNS)")
    r.add_argument("-q", "--quiet", action="store_true", help="no progress bars while retraining")

    f = sub.add_parser(
        "find", help="search a run's pool by text or by an example image",
        description="Ranks the run's pool images by similarity in the teacher's embedding space: to a text "
        "(\"a cat at a flap door\") through the teacher's zero-shot scores, or to an image (--like) through the "
        "run's vector index. Prints the matches with their labels; --out writes them and a contact sheet.",
        epilog='examples:\n  nanofactory find RUN "a sneaker seen from above"\n'
        "  nanofactory find RUN --like ~/photo.jpg -k 24 --out matches/")
    f.add_argument("run", help="run id (or run folder)")
    f.add_argument("text", nargs="?", help="what to look for, in words")
    f.add_argument("--like", type=Path, metavar="IMAGE", help="find images like this one instead")
    f.add_argument("-k", type=int, default=12, help="how many matches (default 12)")
    f.add_argument("--out", type=Path, metavar="DIR", help="write the matches as PNGs and sheet.png here")
    f.add_argument("--runs-dir", type=Path, help="where runs live (default ./runs or $NANOFACTORY_RUNS)")

    t = sub.add_parser(
        "predict", help="run a built model on your own images: each one's class, as the board would answer",
        description="Prepares each image as training prepared its images (centre square, antialiased resize, "
        "gray or RGB: what nf_io.c does to a camera frame) and runs the run's C library, built for this host "
        "(the same integers as TFLite Micro and the board; model_int8.onnx in onnxruntime where there is none). "
        "Prints each image's class and confidence; images in subfolders named after the run's classes are "
        "scored against them (accuracy, each class's recall and precision, the confusion matrix).",
        epilog="examples:\n  nanofactory predict RUN ~/door-cam/today/\n"
        "  nanofactory predict RUN ~/labeled-shots/ --csv answers.csv   # cat/, dog/, other/ subfolders: scored")
    t.add_argument("run", help="run id (or run folder)")
    t.add_argument("images", nargs="+", type=Path, help="image files or folders of them (searched recursively)")
    t.add_argument("--show", type=int, default=40, metavar="N", help="print at most N images' answers (default 40)")
    t.add_argument("--csv", type=Path, metavar="FILE", help="write every image's answer and class scores to FILE")
    t.add_argument("--runs-dir", type=Path, help="where runs live (default ./runs or $NANOFACTORY_RUNS)")

    from agent.export import DEFAULT_SPLITS, SPLITS

    e = sub.add_parser(
        "export", help="write a run's labeled images as a dataset: DIR/<split>/<class>/ and labels.csv",
        description="Writes the images the run labeled into DIR/<split>/<class>/ (train and val by default: what "
        "the student trained and validated on) and DIR/labels.csv, with each file's label, confidence, split, "
        "who labeled it (teacher, person, example, generator) and the original file. A person's review answers "
        "stored in the run override its labels, as a retrained run would use them. Originals are copied at full "
        "resolution; Fashion-MNIST images are written as PNG. Keras' image_dataset_from_directory and "
        "torchvision's ImageFolder read DIR/train as it is. Exporting the same run into the same folder again "
        "resumes it and brings it up to date.",
        epilog="examples:\n  nanofactory export RUN ~/datasets/pet-door\n"
        "  nanofactory export RUN unsure/ --splits low-confidence   # the images the labels were unsure of\n"
        "  nanofactory export RUN big/ --link   # symlinks to the pool's files instead of copies")
    e.add_argument("run", help="run id (or run folder)")
    e.add_argument("out", type=Path, metavar="DIR", help="a new (or empty) folder, or an earlier export of this run")
    e.add_argument("--splits", nargs="+", choices=SPLITS, default=list(DEFAULT_SPLITS), metavar="SPLIT",
                   help=f"which of the run's splits to write (default: {' '.join(DEFAULT_SPLITS)}; also "
                   "low-confidence: the unsure labels left out of training, duplicate, capped)")
    e.add_argument("--link", action="store_true", help="symlink the pool's files instead of copying them")
    e.add_argument("--runs-dir", type=Path, help="where runs live (default ./runs or $NANOFACTORY_RUNS)")


def data_engine_options(plan, args):
    """--dedup, --balance, --max-samples and --clean-labels into the plan's label and train steps."""
    from pydantic import ValidationError

    from agent.spec import describe_validation_error

    dedup = getattr(args, "dedup", "0.985")
    try:
        threshold = None if str(dedup).lower() == "off" else float(dedup)
    except ValueError:
        raise NanofactoryError(f"--dedup takes a cosine similarity like 0.985, or 'off', not {dedup!r}.") from None
    label = plan.step("label")
    try:
        config = label.label.model_validate({**label.label.model_dump(), "dedup_threshold": threshold,
                                             "balance": getattr(args, "balance", None),
                                             "max_samples": getattr(args, "max_samples", None)})
    except ValidationError as e:
        field = str(e.errors()[0]["loc"][0]) if e.errors()[0]["loc"] else ""
        flag = {"dedup_threshold": "--dedup", "balance": "--balance", "max_samples": "--max-samples"}.get(field)
        if flag is None:
            raise NanofactoryError(describe_validation_error(e, "data options")) from None
        what = {"--dedup": "a cosine similarity above 0 and at most 1, e.g. 0.985, or 'off'",
                "--balance": "a ratio of 1 or more, e.g. 3 (each class at most 3 x the smallest)",
                "--max-samples": "a count of 10 or more"}[flag]
        raise NanofactoryError(f"{flag} takes {what}; got {getattr(args, flag[2:].replace('-', '_'), None)!r}.") from None
    steps = [s.model_copy(update={"label": config}) if s.kind == "label" else
             s.model_copy(update={"clean_labels": bool(getattr(args, "clean_labels", False))}) if s.kind == "train"
             else s for s in plan.steps]
    return plan.model_copy(update={"steps": steps})


def cmd_review(args) -> int:
    from agent.cli import _run_dir
    from agent.review import (
        HUMAN_LABELS,
        load_human_labels,
        oracle_review,
        retrain,
        review_in_terminal,
        review_session,
        spot_check_line,
        weakest_class_line,
    )
    from agent.runs import RunStore

    folder = _run_dir(args.run, args.runs_dir)
    if not (folder / "data" / "labels.npz").is_file():
        raise NanofactoryError(f"Run {folder.name} has no labels yet; finish its label stage first "
                               f"(nanofactory build --resume {folder.name}).")
    if args.budget < 0 or args.refresh < 0:
        raise NanofactoryError("--budget and --refresh must be 0 or more.")

    def refreshing(answers: int) -> None:
        say(f"re-ranking the queue with the {answers} answers so far ...")

    if args.budget and args.oracle:
        say(f"oracle labeled {oracle_review(folder, args.budget, refresh=args.refresh, on_refresh=refreshing)} images")
    elif args.budget:
        if not sys.stdin.isatty():
            raise NanofactoryError("review asks in a terminal and stdin is not one; run it interactively, use the "
                                   "web app's review tab (nanofactory chat), or --oracle for benchmarks.")
        done = review_in_terminal(folder, review_session(folder, args.budget, refresh=args.refresh, on_refresh=refreshing),
                                  args.budget)
        say(f"labeled {done} of {args.budget}")
    given = load_human_labels(folder)
    total = len(given)
    say(f"{total} human labels in {folder / HUMAN_LABELS}")
    for line in (spot_check_line(given), weakest_class_line(given)):
        if line:
            say(line)
    if not args.retrain:
        if total:
            say(f"train on them: nanofactory review {folder.name} --retrain")
        return 0
    if total == 0:
        raise NanofactoryError("There are no human labels to retrain on; label some first (drop --retrain).")
    store = RunStore(folder.parent)
    before = store.path(folder.name) / "metrics.json"
    say(f"retraining {folder.name} with {total} human labels ...")
    run, metrics = retrain(folder, store, show_bars=not args.quiet)
    print_summary(run, metrics)
    if before.is_file():
        import json

        from agent.review import retrain_lines

        for line in retrain_lines(folder.name, json.loads(before.read_text()), metrics):
            print(line)
        print(f"every class, side by side: nanofactory runs compare {folder.name} {run.id}")
    return 0


def cmd_find(args) -> int:
    from agent.cli import _run_dir
    from agent.pipeline import open_run
    from agent.runs import RunStore
    from agent.stages import StageContext
    from knowledge.index import VectorIndex
    from knowledge.labeling import Projection

    if bool(args.text) == bool(args.like):
        raise NanofactoryError('Give either a text ("a cat at a flap door") or --like IMAGE, not both or neither.')
    if args.k < 1:
        raise NanofactoryError("-k must be at least 1.")
    folder = _run_dir(args.run, args.runs_dir)
    if not (folder / "index" / "pool.faiss").is_file():
        raise NanofactoryError(f"Run {folder.name} has no vector index yet; finish its label stage first "
                               f"(nanofactory build --resume {folder.name}).")
    ctx = StageContext(run=open_run(RunStore(folder.parent), folder.name), show_bars=True)
    teacher = ctx.teacher
    if args.like:
        image = _one_image(args.like, teacher.image_size)
        query = Projection.load(folder / "index" / "projection.npz").apply(teacher.embed(image))
        sims, ids = VectorIndex.load(folder / "index" / "pool.faiss").search(query, args.k)
        sims, ids = sims[0], ids[0]
    else:
        _say_what_text_finds(teacher, args.text)
        scores = ctx.class_scores([args.text])[:, 0]
        ids = np.argsort(-scores, kind="stable")[: args.k]
        sims = scores[ids]
    with np.load(folder / "data" / "labels.npz") as z:
        probs, split = z["probs"], z["split"]
    names = ctx.run.spec.label_names
    uids = ctx.pool.uids
    print(f"{'rank':>4}  {'score':>6}  {'label':<14} {'conf':>5}  {'split':<14} uid")
    for rank, (i, s) in enumerate(zip(ids, sims), 1):
        print(f"{rank:>4}  {s:6.3f}  {names[probs[i].argmax()]:<14} {probs[i].max():5.2f}  {split[i]:<14} {uids[i]}")
    if args.out:
        _write_matches(args.out, ctx, ids, [f"{names[probs[i].argmax()]} {s:.2f}" for i, s in zip(ids, sims)])
        say(f"matches and sheet.png in {args.out}")
    return 0


def _say_what_text_finds(teacher, text: str) -> None:
    """The ImageNet concepts a text search really looks for, and a warning when none is near the text."""
    from knowledge.teachers.efficientnet_lite import FAR_FROM_CONCEPTS

    if not hasattr(teacher, "concepts"):
        return  # CLIP compares the text with the images themselves
    say(f'"{text}" is searched as the teacher\'s ImageNet concepts '
        + ", ".join(f"{name} {weight:.0%}" for name, weight in teacher.concepts(text, 3)) + ".")
    if teacher.closeness(text) < FAR_FROM_CONCEPTS:
        say("None of them is close to the text, so these matches are unlikely to be what you mean; describe the "
            "object in common words (\"a pair of trousers\"), or search with --like IMAGE.")


def _one_image(path: Path, size: int) -> np.ndarray:
    from PIL import Image

    from knowledge.pools import model_pixels, unreadable_image_errors

    if not path.is_file():
        raise NanofactoryError(f"Image {path} does not exist; pass an image file to --like.")
    try:
        with Image.open(path) as im:
            im.load()
            return model_pixels(im, size, 3)[None]
    except unreadable_image_errors() as e:
        raise NanofactoryError(f"{path} is not a readable image ({type(e).__name__}); pass a JPEG or PNG.") from None


def _write_matches(out: Path, ctx, ids, captions: list[str]) -> None:
    from PIL import Image, ImageDraw

    from knowledge.io import atomic_path

    out.mkdir(parents=True, exist_ok=True)
    images = ctx.pool.load(ids, 96, 3)
    cols = min(6, len(ids))
    sheet = Image.new("RGB", (cols * 100, -(-len(ids) // cols) * 114), "white")
    draw = ImageDraw.Draw(sheet)
    for k, (img, cap) in enumerate(zip(images, captions)):
        im = Image.fromarray(img)
        with atomic_path(out / f"{k + 1:03d}.png") as tmp:
            im.save(tmp, format="PNG")
        x, y = (k % cols) * 100 + 2, (k // cols) * 114 + 2
        sheet.paste(im, (x, y))
        draw.text((x, y + 97), cap, fill="black")
    with atomic_path(out / "sheet.png") as tmp:
        sheet.save(tmp, format="PNG")


def cmd_predict(args) -> int:
    import csv
    import io

    from agent.cli import _run_dir
    from agent.predict import confusion_lines, predict
    from knowledge.io import write_text_atomic

    if args.show < 0:
        raise NanofactoryError("--show must be 0 or more.")
    folder = _run_dir(args.run, args.runs_dir)
    p = predict(folder, args.images, show_bars=sys.stderr.isatty())
    print(f"{len(p.images)} image{'s' if len(p.images) != 1 else ''} through {p.engine}, of run {folder.name}")
    labels, width = p.labels, min(max(len(n) for n in p.images), 60)
    if args.show:
        print(f"{'image':<{width}}  {'class':<16} {'score':>6}  then")
    for i in range(min(args.show, len(p.images))):
        order = np.argsort(-p.probs[i])
        then = f"{p.names[order[1]]} {100 * p.probs[i, order[1]]:.0f} %" if len(order) > 1 else ""
        mark = "" if p.truth is None or p.truth[i] < 0 else "  ✓" if p.truth[i] == order[0] else \
            f"  ✗ ({p.names[p.truth[i]]})"
        print(f"{p.images[i][-width:]:<{width}}  {labels[i]:<16} {100 * p.probs[i, order[0]]:5.0f} %  {then}{mark}")
    if len(p.images) > args.show:
        print(f"... {len(p.images) - args.show} more" + ("" if args.csv else "; --csv FILE writes them all"))
    counts = {n: labels.count(n) for n in p.names if labels.count(n)}
    print("answers: " + ", ".join(f"{n} {c}" for n, c in counts.items()))
    for line in confusion_lines(p):
        print(line)
    if p.unmatched:
        print(f"subfolders that name no class, scored as {p.names[-1]!r}: {', '.join(p.unmatched)}")
    if p.skipped:
        print(f"skipped {len(p.skipped)} unreadable file{'s' if len(p.skipped) != 1 else ''}: "
              + ", ".join(name for name, _ in p.skipped[:5]) + (" ..." if len(p.skipped) > 5 else ""))
    if args.csv:
        out = io.StringIO()
        w = csv.writer(out)
        w.writerow(["image", "class", "score", *(f"score_{n}" for n in p.names)]
                   + (["folder_class"] if p.truth is not None else []))
        for i, name in enumerate(p.images):
            truth = [] if p.truth is None else [p.names[p.truth[i]] if p.truth[i] >= 0 else ""]
            w.writerow([name, labels[i], f"{p.probs[i].max():.4f}", *(f"{v:.4f}" for v in p.probs[i]), *truth])
        write_text_atomic(args.csv, out.getvalue())
        print(f"wrote {args.csv}")
    return 0


def cmd_export(args) -> int:
    import time
    from collections import Counter

    from agent.cli import _run_dir
    from agent.export import LABELS_CSV, export_run

    folder = _run_dir(args.run, args.runs_dir)
    start = time.perf_counter()
    r = export_run(folder, args.out, tuple(dict.fromkeys(args.splits)), link=args.link, show_bars=sys.stderr.isatty())
    counts = r.counts()
    splits = [s for s in dict.fromkeys(args.splits) if any(s in c for c in counts.values())]
    width = max(len(n) for n in [*counts, "class"])
    print(f"{'class':<{width}}  " + "  ".join(f"{s:>14}" for s in splits))
    for name, c in counts.items():
        print(f"{name:<{width}}  " + "  ".join(f"{c.get(s, 0):>14,}" for s in splits))
    done = f"linked {r.written:,} now" if args.link else f"wrote {r.written:,} now, {r.bytes / 2**20:.1f} MB in all"
    print(f"{len(r.items):,} images of run {folder.name} in {r.folder} ({done}) in {time.perf_counter() - start:.0f} s"
          + (f"; removed {r.removed:,} files of the earlier export that this one does not hold (another split, or a label "
             "changed since)" if r.removed else ""))
    by = Counter(it.labeled_by for it in r.items)
    print(f"{LABELS_CSV}: each file's label, confidence, split and origin; labeled by "
          + ", ".join(f"{k} {v:,}" for k, v in by.items())
          + (f" ({r.answers:,} review answers in the run" + (f"; {r.rejected:,} said 'none of these' and are left out"
                                                              if r.rejected else "") + ")" if r.answers else ""))
    problems = []
    if r.missing:
        problems.append(f"{len(r.missing):,} image(s) the run labeled are no longer on disk ({r.missing[0]}"
                        f"{' ...' if len(r.missing) > 1 else ''}) and were left out")
    if r.changed:
        problems.append(f"{len(r.changed):,} pool file(s) changed since the run labeled them ({r.changed[0]}"
                        f"{' ...' if len(r.changed) > 1 else ''}) and were left out; build again to label them")
    for p in problems:
        print(f"error: {p}.", file=sys.stderr)
    return 1 if problems else 0
