"""``nanofactory export``: a run's labeled images as a dataset other tools read.

The run's manifest decides what goes where: ``DIR/<split>/<class>/<file>`` for the splits asked
(``train`` and ``val`` by default: what the student trained and validated on), and ``DIR/labels.csv``
with every exported file's label, confidence, split, where the image came from and who gave the
label (the teacher, a person in review, the user's examples, a generator). Keras'
``image_dataset_from_directory`` and torchvision's ``ImageFolder`` read ``DIR/train`` as it is.

A person's review answers stored in the run override its labels, as they would in a retrained
run: the answered image trains with that label, and "none of these" leaves it out. Files are
copied as they are (full resolution: the export is the data, not the model's view of it; or
linked with ``link``); images a pool holds only as arrays (Fashion-MNIST) are written as PNG.
Every file is written atomically and ``labels.csv`` last, so an interrupted export is never
mistaken for a finished one; exporting again into the same folder resumes it, and removes the
files of an earlier export of the run whose label or split has changed since.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from knowledge.errors import NanofactoryError

SPLITS = ("train", "val", "low-confidence", "duplicate", "capped")  # the manifest's splits a file can be exported from
DEFAULT_SPLITS = ("train", "val")
MARKER = ".nanofactory-export.json"
LABELS_CSV = "labels.csv"


@dataclass
class Item:
    name: str  # the file's path in the export
    label: str
    confidence: float
    split: str
    source: str  # pool, examples, synthetic
    origin: str  # the original file; for a pool image, its uid until it is found
    labeled_by: str  # teacher, person, example, generator
    sha1: str = ""  # a pool image's content hash when the run labeled it


@dataclass
class Exported:
    folder: Path
    items: list[Item]  # what the export holds
    written: int = 0  # files written now (the rest were there from an interrupted or earlier export)
    removed: int = 0  # stale files of an earlier export removed
    bytes: int = 0
    missing: list[str] = field(default_factory=list)  # images the run labeled that are no longer on disk
    changed: list[str] = field(default_factory=list)  # pool files whose content differs from what the run labeled
    answers: int = 0  # a person's review answers applied
    rejected: int = 0  # of them, "none of these": left out

    def counts(self) -> dict[str, dict[str, int]]:
        """{label: {split: images}}."""
        out: dict[str, dict[str, int]] = {}
        for it in self.items:
            out.setdefault(it.label, {}).setdefault(it.split, 0)
            out[it.label][it.split] += 1
        return out


def _safe(name: str) -> str:
    """A manifest uid or class name as one file or folder name."""
    out = name.replace("\\", "/").strip("/").replace("/", "__")
    return out if out not in ("", ".", "..") else "_"


def _plan(run_dir: Path, splits: tuple[str, ...], names: list[str]) -> tuple[list[Item], int, int]:
    """The images to export, with their labels (a person's answers applied, those naming one of ``names``, as
    the label stage takes them); how many answers applied, and how many of them said "none of these"."""
    from agent.review import NONE_LABEL, load_human_labels
    from agent.stage_label import HUMAN_PROVENANCE
    from knowledge.pools import IMAGE_SUFFIXES

    manifest = run_dir / "data" / "manifest.jsonl"
    if not manifest.is_file():
        raise NanofactoryError(f"Run {run_dir.name} has no labeled data yet; finish its label stage first "
                               f"(nanofactory build --resume {run_dir.name}).")
    answers = load_human_labels(run_dir)
    items, used, n_answers, rejected = [], set(), 0, 0
    for line in manifest.read_text().splitlines():
        row = json.loads(line)
        source = "synthetic" if row.get("synthetic") else "examples" if row["source"] == "examples" else "pool"
        label, conf, split = row["label"], float(row["confidence"]), row["split"]
        by = "person" if row.get("provenance") == HUMAN_PROVENANCE else \
            {"synthetic": "generator", "examples": "example"}.get(source, "teacher")
        answer = answers.get(row["uid"]) if source == "pool" else None
        answer = answer.get("label") if isinstance(answer, dict) else None
        if answer == NONE_LABEL:
            n_answers += 1
            rejected += 1
            continue
        if answer in names:
            n_answers += 1
            label, conf, split, by = answer, 1.0, "train", "person"  # a person's labels always train
        if split not in splits:
            continue
        if source == "examples":
            origin, stem = row["uid"], "example__" + Path(row["uid"]).name
        elif source == "synthetic":
            origin, stem = str(run_dir / row["uid"]), _safe(row["uid"])
        else:  # a folder pool's uid is the file's path in it; an array pool's (Fashion-MNIST) is written as PNG
            origin, stem = row["uid"], _safe(row["uid"])
            stem += "" if Path(stem).suffix.lower() in IMAGE_SUFFIXES else ".png"
        folder, name, k = f"{split}/{_safe(label)}", f"{split}/{_safe(label)}/{stem}", 1
        while name in used:  # two example folders with a file of the same name
            k += 1
            name = f"{folder}/{Path(stem).stem}-{k}{Path(stem).suffix}"
        used.add(name)
        items.append(Item(name=name, label=label, confidence=conf, split=split, source=source, origin=origin,
                          labeled_by=by, sha1=row.get("sha1", "")))
    return items, n_answers, rejected


def labels_csv(run_dir: Path, target: Path) -> Path:
    """Every image the run labeled, a row each (image, label, confidence, split, labeled_by, source), with a
    person's answers applied as the export applies them: the web page's download of the labels. Written
    again only when the labels or the answers changed since."""
    from agent.review import run_spec
    from knowledge.io import write_text_atomic

    run_dir, target = Path(run_dir), Path(target)
    sources = [run_dir / "data" / "manifest.jsonl", run_dir / "data" / "human_labels.json"]
    newest = max(p.stat().st_mtime for p in sources if p.is_file())
    if target.is_file() and target.stat().st_mtime > newest:
        return target
    items, _, _ = _plan(run_dir, SPLITS, run_spec(run_dir).label_names)
    write_text_atomic(target, _csv(["image", "label", "confidence", "split", "labeled_by", "source"],
                                   ([it.origin, it.label, f"{it.confidence:.4f}", it.split, it.labeled_by, it.source]
                                    for it in items)))
    return target


def _csv(header: list[str], rows) -> str:
    text = io.StringIO()
    w = csv.writer(text)
    w.writerow(header)
    w.writerows(rows)
    return text.getvalue()


def _check_folder(out: Path, run_id: str) -> None:
    if out.exists() and not out.is_dir():
        raise NanofactoryError(f"{out} is a file; pass a folder to export into.")
    if not out.is_dir() or not any(out.iterdir()):
        return
    marker = out / MARKER
    if not marker.is_file():
        raise NanofactoryError(f"{out} is not empty and holds no Nanofactory export; pass a new folder, so nothing "
                               "in it is overwritten.")
    try:
        previous = json.loads(marker.read_text()).get("run")
    except (json.JSONDecodeError, UnicodeDecodeError, AttributeError):
        previous = None
    if previous != run_id:
        raise NanofactoryError(f"{out} holds an export of {'run ' + previous if previous else 'another run'}; pass a "
                               f"new folder for run {run_id}.")


def _put(target: Path, original: Path, link: bool, sha1: str = "") -> bool | None:
    """Copy (or symlink) ``original`` to ``target`` unless an earlier export left it there; whether it wrote,
    or None when ``original``'s content is no longer ``sha1`` (what the run labeled)."""
    from knowledge.io import atomic_path

    if link:
        if target.is_symlink() and Path(os.readlink(target)) == original.resolve():
            return False
        if sha1 and hashlib.sha1(original.read_bytes()).hexdigest() != sha1:
            return None
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.link")
        tmp.unlink(missing_ok=True)
        tmp.symlink_to(original.resolve())
        os.replace(tmp, target)
        return True
    if target.is_file() and not target.is_symlink() and target.stat().st_size == original.stat().st_size:
        return False  # copied whole by an earlier export (copies are atomic)
    data = original.read_bytes()
    if sha1 and hashlib.sha1(data).hexdigest() != sha1:
        return None
    with atomic_path(target) as tmp:
        tmp.write_bytes(data)
    return True


def _put_array(target: Path, a) -> bool:
    from PIL import Image

    from knowledge.io import atomic_path

    if target.is_file():
        return False
    with atomic_path(target) as tmp:
        Image.fromarray(a[..., 0] if a.shape[-1] == 1 else a).save(tmp, format="PNG")
    return True


def _remove_stale(out: Path, keep: set[str]) -> int:
    """Files under the split folders that the export no longer holds (an earlier export's, since relabeled)."""
    removed = 0
    for split in SPLITS:
        if not (out / split).is_dir():
            continue
        for f in sorted((out / split).rglob("*")):
            if (f.is_file() or f.is_symlink()) and f.relative_to(out).as_posix() not in keep:
                f.unlink()
                removed += 1
        for d in sorted((out / split).rglob("*"), reverse=True):
            if d.is_dir() and not d.is_symlink() and not any(d.iterdir()):
                d.rmdir()
    return removed


def _pool_images(sources) -> tuple[dict[str, Path], dict]:
    """Where each pool image of ``sources`` (the spec's) is now, by uid: the file, for folder sources (listed,
    not decoded: the build read them), or the pixels, for sources held as arrays (Fashion-MNIST)."""
    from agent.data import load_source
    from knowledge.pools import image_files

    files, arrays = {}, {}
    for source in sources:
        if source.kind == "folder":
            folder = Path(source.path)
            for f in image_files(folder) if folder.is_dir() else []:
                files.setdefault(str(f.relative_to(folder)), f)
        else:
            pool = load_source(source)
            arrays.update(zip(pool.uids, pool.pixels))
    return files, arrays


def export_run(run_dir: Path, out: Path, splits: tuple[str, ...] = DEFAULT_SPLITS, link: bool = False,
               show_bars: bool = False) -> Exported:
    """Write the run's labeled images under ``out`` (see the module's docstring)."""
    from agent.pipeline import open_run
    from agent.runs import RunStore
    from knowledge.io import write_json_atomic, write_text_atomic

    run_dir, out = Path(run_dir), Path(out).expanduser()
    bad = [s for s in splits if s not in SPLITS]
    if bad:
        raise NanofactoryError(f"Unknown split {bad[0]!r}; choose from {', '.join(SPLITS)}.")
    if out.resolve() == run_dir.resolve() or run_dir.resolve() in out.resolve().parents:
        raise NanofactoryError(f"{out} is inside the run's own folder; export to a folder outside it.")
    _check_folder(out, run_dir.name)
    spec = open_run(RunStore(run_dir.parent), run_dir.name).spec
    items, answers, rejected = _plan(run_dir, tuple(splits), spec.label_names)
    if not items:
        raise NanofactoryError(f"Run {run_dir.name} has no image in the splits asked ({', '.join(splits)}); "
                               f"ask for others with --splits ({', '.join(SPLITS)}).")
    files, arrays = _pool_images(spec.data.pool) if any(it.source == "pool" for it in items) else ({}, {})
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out / MARKER, {"run": run_dir.name, "splits": list(splits),
                                     "note": "written by `nanofactory export`; exporting this run here again resumes"})
    result = Exported(folder=out, items=[], answers=answers, rejected=rejected)
    todo = items
    if show_bars and len(items) > 200:
        from tqdm import tqdm

        todo = tqdm(items, desc="export", unit="img")
    for it in todo:
        target = out / it.name
        if it.source == "pool" and it.origin in arrays:
            pixels = arrays[it.origin]
            if it.sha1 and hashlib.sha1(pixels.tobytes()).hexdigest() != it.sha1:
                result.changed.append(it.origin)
                continue
            result.written += _put_array(target, pixels)
            result.bytes += target.stat().st_size
            result.items.append(it)
            continue
        original = files.get(it.origin) if it.source == "pool" else Path(it.origin)
        if original is None or not original.is_file():
            result.missing.append(it.origin)
            continue
        it.origin = str(original)
        written = _put(target, original, link, it.sha1 if it.source == "pool" else "")
        if written is None:  # the file was replaced since the run labeled it
            result.changed.append(it.origin)
            continue
        result.written += written
        result.bytes += original.stat().st_size
        result.items.append(it)
    result.removed = _remove_stale(out, {it.name for it in result.items})
    write_text_atomic(out / LABELS_CSV, _csv(["file", "label", "confidence", "split", "labeled_by", "source", "origin"],
                                             ([it.name, it.label, f"{it.confidence:.4f}", it.split, it.labeled_by,
                                               it.source, it.origin] for it in result.items)))
    return result
