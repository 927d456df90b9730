"""A built model's answers on a person's own images: ``nanofactory predict`` and the web page's Try tab.

Each image is prepared as training prepared its images (``knowledge.pools.model_pixels``: the
centred square, Pillow's antialiased resize, gray or RGB; what ``nf_io.c`` does to a camera frame,
bit for bit) and run through the run's C library, built for this host: the same integers as
TFLite Micro and the board. Where the run has no compiled library of this compiler version or
gcc is missing, ``model_int8.onnx`` in onnxruntime answers instead (its QDQ arithmetic, which the
build's int8 accuracy measures), and the result says which. Images under subfolders named after
the run's classes are scored against them, as a test folder is.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from knowledge.errors import NanofactoryError

log = logging.getLogger(__name__)
C_LIBRARY = "the C library (built for this host: the same integers as TFLite Micro and the board)"
ONNX = "model_int8.onnx in onnxruntime"


@dataclass
class Predictions:
    images: list[str]  # as given: a file's path, or a folder's path joined with the image's place in it
    probs: np.ndarray  # (N, classes): the model's output through a softmax
    names: list[str]  # the run's outputs, in order
    engine: str  # C_LIBRARY, or ONNX with why
    truth: np.ndarray | None = None  # each image's class index from its subfolder, -1 unknown; None: no class folders
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (image, why)
    unmatched: list[str] = field(default_factory=list)  # subfolders that name no class (scored as "other")

    @property
    def labels(self) -> list[str]:
        return [self.names[i] for i in self.probs.argmax(1)]

    def scored(self) -> np.ndarray:
        return np.where(self.truth >= 0)[0] if self.truth is not None else np.zeros(0, np.int64)

    def accuracy(self) -> float | None:
        rows = self.scored()
        return float((self.probs[rows].argmax(1) == self.truth[rows]).mean()) if len(rows) else None


def image_paths(paths: list[Path]) -> list[tuple[str, Path, str | None]]:
    """(shown name, file, the subfolder it sits in under a given folder) for files and folders (recursive)."""
    from knowledge.pools import IMAGE_SUFFIXES, check_folder

    out = []
    for given in paths:
        given = Path(given).expanduser()
        if given.is_dir():
            for f in check_folder(given, "`nanofactory predict`"):
                rel = f.relative_to(given)
                out.append((str(given / rel), f, rel.parts[0] if len(rel.parts) > 1 else None))
        elif given.is_file():
            if given.suffix.lower() not in IMAGE_SUFFIXES:
                raise NanofactoryError(f"{given} is not an image ({', '.join(sorted(IMAGE_SUFFIXES))}); pass images "
                                       "or folders of them.")
            out.append((str(given), given, None))
        else:
            raise NanofactoryError(f"{given} does not exist; pass image files or folders of them.")
    return out


def _truth(folders: list[str | None], names: list[str], other: bool) -> tuple[np.ndarray | None, list[str]]:
    """Class indices from subfolder names, when any names a class; the subfolders that name none."""
    from agent.data import label_index

    named = {f: label_index(f, names[:-1] if other else names, False) for f in set(folders) if f is not None}
    if not any(i >= 0 for i in named.values()):  # "2024/", "kitchen/": folders, not classes
        return None, []
    unmatched = sorted(f for f, i in named.items() if i < 0 and f.lower() not in ("other", "others"))
    index = {f: (i if i >= 0 else len(names) - 1 if other else -1) for f, i in named.items()}
    return np.array([index[f] if f is not None else -1 for f in folders], np.int64), unmatched


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(1, keepdims=True)


CHUNK = 1024  # images read and answered at a time: memory stays that many images, whatever the folder holds


def host_executable(c_dir: Path) -> Path:
    """The C library's host harness, built once per library source and kept in the cache (a build takes seconds;
    the web page's Try it asks for answers again and again)."""
    import hashlib
    import os
    import platform
    import shutil
    import tempfile

    from compilers.verify import HOST_CFLAGS, build_host
    from knowledge.cache import cache_dir

    h = hashlib.sha1(f"{HOST_CFLAGS} {platform.machine()}".encode())
    for f in sorted(p for p in c_dir.rglob("*") if p.is_file()):
        h.update(f.relative_to(c_dir).as_posix().encode() + b"\0" + f.read_bytes())
    folder = cache_dir() / "host" / h.hexdigest()[:20]
    if (folder / "nf_test").is_file():
        return folder / "nf_test"
    folder.parent.mkdir(parents=True, exist_ok=True)
    build = Path(tempfile.mkdtemp(prefix=".build-", dir=folder.parent))
    try:
        build_host(c_dir, build)
        os.replace(build, folder)  # whole, or not at all
    except OSError:  # another process put it there first
        pass
    finally:
        shutil.rmtree(build, ignore_errors=True)
    if not (folder / "nf_test").is_file():
        raise RuntimeError(f"the host build of {c_dir} left no harness")
    return folder / "nf_test"


def _c_library(compiled_dir: Path):
    """(run(pixels) -> outputs, None), or (None, why not) when the run's C library cannot answer here."""
    from compilers.build import load_compiled
    from compilers.verify import run_host

    try:
        compiled = load_compiled(compiled_dir)
        exe = host_executable(compiled_dir / "c")
    except NanofactoryError as e:
        return None, str(e).split(";")[0]
    except RuntimeError:
        return None, "its C library does not compile on this host"
    graph = compiled.graph
    lut = graph.image.pixel_lut(graph.tensors[graph.input].quant)
    out = graph.tensors[graph.output]
    softmaxed = graph.ops[-1].kind == "softmax"

    def run(pixels: np.ndarray) -> np.ndarray:
        q, _ = run_host(exe, lut[pixels].reshape(len(pixels), -1), out.size)
        real = out.quant.dequantize(q)
        return real if softmaxed else _softmax(real)

    return run, None


def _onnx(model: Path):
    """model_int8.onnx as the build measured it (``run_onnx``: its QDQ arithmetic, the same on every host)."""
    from compilers.onnx_export import run_onnx
    from tools.train import to_input

    return lambda pixels: _softmax(run_onnx(model, to_input(pixels).numpy()))


def predict(run_dir: Path, paths: list[Path], show_bars: bool = False) -> Predictions:
    """The run's int8 model on ``paths`` (image files and folders), read and answered ``CHUNK`` images at a time."""
    from PIL import Image

    from agent.pipeline import open_run
    from agent.runs import RunStore
    from knowledge.pools import model_pixels, unreadable_image_errors

    run_dir = Path(run_dir)
    run = open_run(RunStore(run_dir.parent), run_dir.name)
    if not (run_dir / "model_int8.onnx").is_file():
        raise NanofactoryError(f"Run {run_dir.name} has no int8 model yet; finish it with "
                               f"`nanofactory build --resume {run_dir.name}`.")
    found = image_paths(paths)
    inp = run.plan.step("data").input
    engine, why = _c_library(run_dir / "compiled")
    used = C_LIBRARY
    if engine is None:
        engine, used = _onnx(run_dir / "model_int8.onnx"), f"{ONNX} ({why})"
    shown, probs, folders, skipped = [], [], [], []
    bar = None
    if show_bars and len(found) > 200:
        from tqdm import tqdm

        bar = tqdm(total=len(found), desc="images", unit="img")
    for start in range(0, len(found), CHUNK):
        pixels = []
        for name, path, folder in found[start : start + CHUNK]:
            try:
                with Image.open(path) as im:
                    im.load()
                    pixels.append(model_pixels(im, inp.size, inp.channels))
            except unreadable_image_errors() as e:
                skipped.append((name, type(e).__name__))
                continue
            shown.append(name)
            folders.append(folder)
        if pixels:
            probs.append(engine(np.stack(pixels)))
        if bar is not None:
            bar.update(min(CHUNK, len(found) - start))
    if bar is not None:
        bar.close()
    if not shown:
        raise NanofactoryError(f"None of the {len(found)} image files could be read (all corrupt); pass valid images.")
    names = run.spec.label_names
    truth, unmatched = _truth(folders, names, run.spec.other)
    return Predictions(shown, np.concatenate(probs), names, used, truth, skipped, unmatched)


def confusion_lines(p: Predictions) -> list[str]:
    """The scored images' accuracy, each class's recall and precision, and the confusion matrix, as text."""
    from agent.stages import confusion, per_class_metrics

    rows = p.scored()
    if not len(rows):
        return []
    truth, pred = p.truth[rows], p.probs[rows].argmax(1)
    right = int((truth == pred).sum())
    lines = [f"against the class folders: {right} of {len(rows)} right ({100 * right / len(rows):.1f} %)"]
    for name, m in per_class_metrics(truth, pred, p.names).items():
        if m["support"] or (pred == p.names.index(name)).any():
            lines.append(f"  {name:<16} recall {100 * m['recall']:5.1f} % of {m['support']:<5} "
                         f"precision {100 * m['precision']:5.1f} %")
    width = max(len(n) for n in p.names)
    mat = confusion(truth, pred, len(p.names))
    lines.append("confusion (rows: the folder's class, columns: the model's answer)")
    lines.append(" " * (width + 2) + " ".join(f"{n[:6]:>6}" for n in p.names))
    lines += [f"  {n:<{width}}" + " ".join(f"{v:>6}" for v in row) for n, row in zip(p.names, mat)]
    return lines
