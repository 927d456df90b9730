"""Atomic file writes: a crash or Ctrl-C never leaves a half-written artifact."""

from __future__ import annotations

import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


def _read_umask() -> int:
    mask = os.umask(0o022)  # reading it means setting it: done once, at import, before any thread writes files
    os.umask(mask)
    return mask


_UMASK = _read_umask()


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it over ``path`` only on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    tmp_path = Path(tmp)
    os.chmod(tmp_path, 0o666 & ~_UMASK)  # mkstemp makes it 0600; the file gets what open() would have given it
    try:
        yield tmp_path
        try:
            os.replace(tmp_path, path)
        except OSError as e:  # a folder where the file should go, ...: name the path asked for, not the temporary
            raise type(e)(e.errno, e.strerror, str(path)) from None
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_text_atomic(path: Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json_atomic(path: Path, data) -> None:
    write_text_atomic(path, json.dumps(data, indent=2, default=str) + "\n")


def looks_like_path(model: str) -> bool:
    """Whether a model reference (--teacher-model, --generate-model, a plan's model field) is a local folder rather
    than a hub id: written as one ("./sd", "/models/clip", "~/clip", more slashes than "org/name" has), there, or
    an "org/name" whose "org" is a folder here ("models/clip" beside a models/ folder: a path mistyped, not a hub id)."""
    return (model.startswith((".", "/", "~")) or model.count("/") > 1 or "\\" in model
            or Path(model).expanduser().exists()
            or (model.count("/") == 1 and Path(model.split("/")[0]).expanduser().is_dir()))


def read_json_or_none(path: Path):
    """The JSON in ``path``; None when the file is missing or no longer reads as JSON (cut short, edited), which
    callers treat as "not written": a run's stage records, its metrics."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None


# ---- .npy files in chunks: memory that does not grow with the pool ---------------------------


def write_npy_chunks(path: Path, chunks, dtype) -> tuple[int, ...]:
    """Write row chunks (arrays with equal trailing shape) as one .npy, atomically; the shape written.

    Only one chunk is in memory at a time: the header is written last, over a placeholder
    of the same length, once the row count is known.
    """
    import numpy as np

    dtype = np.dtype(dtype)
    with atomic_path(Path(path)) as tmp, open(tmp, "wb") as f:
        rows, tail = 0, None
        header = {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False, "shape": (10**12,)}
        for chunk in chunks:
            chunk = np.ascontiguousarray(chunk, dtype=dtype)
            if tail is None:
                tail = chunk.shape[1:]
                header["shape"] = (10**12, *tail)  # the longest count this file can hold: the header's width
                np.lib.format.write_array_header_1_0(f, header)
            elif chunk.shape[1:] != tail:
                raise ValueError(f"chunk shape {chunk.shape[1:]} differs from {tail}")
            f.write(chunk.tobytes())
            rows += len(chunk)
        if tail is None:
            raise ValueError("no chunks to write")
        end = f.tell()
        f.seek(0)
        # numpy reserves room for a 21-digit first axis, so this header has the placeholder's length
        np.lib.format.write_array_header_1_0(f, dict(header, shape=(rows, *tail)))
        f.seek(end)
    return (rows, *tail)


def _read_header(f):
    import numpy as np

    version = np.lib.format.read_magic(f)
    read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
    return read(f)


def iter_npy_rows(path: Path, chunk: int = 8192):
    """Yield (start, rows) over a .npy file, ``chunk`` rows at a time, read with plain file reads.

    Unlike a memory map, pages read this way stay in the page cache, not in the process's
    resident set, so a pass over a 60k-row file costs one chunk of memory.
    """
    import numpy as np

    with open(path, "rb") as f:
        shape, fortran, dtype = _read_header(f)
        if fortran:
            raise ValueError(f"{path} is Fortran-ordered")
        row = int(np.prod(shape[1:], dtype=np.int64))
        for start in range(0, shape[0], chunk):
            n = min(chunk, shape[0] - start)
            yield start, np.fromfile(f, dtype=dtype, count=n * row).reshape((n, *shape[1:]))


def read_npy_rows(path: Path, rows):
    """A copy of some rows of a .npy file (a short-lived memory map, so only those pages are read)."""
    import numpy as np

    mm = np.load(path, mmap_mode="r")
    out = np.array(mm[np.asarray(rows, np.int64)]) if len(rows) else np.zeros((0, *mm.shape[1:]), mm.dtype)
    del mm
    return out


def write_npz_atomic(path: Path, **arrays) -> None:
    """``np.savez_compressed`` through ``atomic_path``."""
    import numpy as np

    with atomic_path(Path(path)) as tmp, open(tmp, "wb") as f:
        np.savez_compressed(f, **arrays)
