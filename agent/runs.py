"""The run store: one folder per run under a root, indexed in SQLite.

``runs/<run-id>/`` holds the artifacts; ``runs/index.sqlite`` lists runs so
``nanofactory runs`` can list and compare them without opening every folder.
"""

from __future__ import annotations

import logging
import os
import re
import sqlite3
import time
from contextlib import closing
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from knowledge.errors import NanofactoryError
from knowledge.io import read_json_or_none

log = logging.getLogger(__name__)

BUILDING = ".building"  # in a run folder while a process builds it: that process's id and host

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY,
    created REAL NOT NULL,
    status TEXT NOT NULL,
    device TEXT,
    request TEXT,
    student_int8_accuracy REAL,
    oracle_int8_accuracy REAL,
    weight_bytes INTEGER,
    sram_bytes INTEGER,
    latency_ms REAL,
    seconds REAL,
    message TEXT
)
"""


def default_root() -> Path:
    return Path(os.environ.get("NANOFACTORY_RUNS", "runs"))


@dataclass
class RunRecord:
    id: str
    created: float
    status: str
    device: str | None
    request: str | None
    student_int8_accuracy: float | None
    oracle_int8_accuracy: float | None
    weight_bytes: int | None
    sram_bytes: int | None
    latency_ms: float | None
    seconds: float | None
    message: str | None


class RunStore:
    def __init__(self, root: Path | None = None):
        self.root = Path(root) if root is not None else default_root()

    @property
    def db_path(self) -> Path:
        return self.root / "index.sqlite"

    def _connect(self) -> sqlite3.Connection:
        self.root.mkdir(parents=True, exist_ok=True)
        con = sqlite3.connect(self.db_path, timeout=30)
        con.execute(_SCHEMA)
        return con

    def new_id(self, hint: str = "") -> str:
        slug = re.sub(r"[^a-z0-9]+", "-", hint.lower()).strip("-")[:24].strip("-") or "run"
        base = time.strftime("%Y%m%d-%H%M%S") + f"-{slug}"
        run_id, n = base, 1
        while (self.root / run_id).exists():
            n += 1
            run_id = f"{base}-{n}"
        return run_id

    def path(self, run_id: str) -> Path:
        path = self.root / run_id
        if not (path / "design.json").is_file():
            known = ", ".join(r.id for r in self.list()[:5]) or "none yet"
            raise NanofactoryError(f"No run {run_id!r} under {self.root}; recent runs: {known}.")
        return path

    def record(self, run_id: str, status: str, device: str | None = None, request: str | None = None,
               metrics: dict | None = None, message: str | None = None) -> None:
        with closing(self._connect()) as con, con:
            con.execute(
                """INSERT INTO runs (id, created, status, device, request) VALUES (?, ?, ?, ?, ?)
                   ON CONFLICT(id) DO UPDATE SET status = excluded.status""",
                (run_id, time.time(), status, device, request),
            )
            _set_metrics(con, run_id, metrics or {}, message)

    def list(self) -> list[RunRecord]:
        if not self.db_path.exists() and not any(self.root.glob("*/design.json")):
            return []
        with closing(self._connect()) as con:
            self._adopt(con)
            gone = [(run_id,) for (run_id,) in con.execute("SELECT id FROM runs")
                    if not (self.root / run_id / "design.json").is_file()]
            if gone:  # folders deleted by hand: the folder is the record, the index only a list of them
                with con:
                    con.executemany("DELETE FROM runs WHERE id = ?", gone)
            rows = con.execute(f"SELECT {', '.join(RunRecord.__dataclass_fields__)} FROM runs ORDER BY created DESC")
            return [RunRecord(*row) for row in rows]

    def find(self, run_id: str) -> RunRecord | None:
        """One run's index entry, or None; a folder the index lacks is indexed first, as ``list`` does."""
        if not run_id or Path(run_id).name != run_id or run_id in (".", ".."):  # a name under the root only
            return None
        design_path = self.root / run_id / "design.json"
        if not self.db_path.exists() and not design_path.exists():
            return None
        query = f"SELECT {', '.join(RunRecord.__dataclass_fields__)} FROM runs WHERE id = ?"
        with closing(self._connect()) as con:
            row = con.execute(query, (run_id,)).fetchone()
            if row is None and design_path.exists():
                self._adopt(con, [design_path])
                row = con.execute(query, (run_id,)).fetchone()
        return RunRecord(*row) if row else None

    def builder(self, run_id: str) -> int | None:
        """The id of a live process on this host that is building the run now, or None."""
        import socket

        marker = read_json_or_none(self.root / run_id / BUILDING)
        if not isinstance(marker, dict) or marker.get("host") != socket.gethostname():
            return None
        try:
            pid = int(marker["pid"])
            os.kill(pid, 0)
        except (KeyError, TypeError, ValueError, ProcessLookupError):
            return None  # the build that wrote it was killed: nothing builds it now
        except PermissionError:
            pass  # alive, another user's
        return pid

    def disk_bytes(self, run_id: str) -> int:
        """What the run's folder holds on disk (symlinked pool images not counted)."""
        return sum(f.stat().st_size for f in self.path(run_id).rglob("*") if f.is_file() and not f.is_symlink())

    def remove(self, run_id: str) -> int:
        """Delete a run's folder and its index entry; the bytes freed. Refuses a run a live process builds.

        The folder is first renamed out of the runs' namespace, so an interrupted removal leaves no half
        run that `runs` would list or `--resume` would continue."""
        import shutil

        folder = self.path(run_id)
        pid = self.builder(run_id)
        if pid is not None:
            raise NanofactoryError(f"Run {run_id} is being built by process {pid}; stop that build first (Ctrl-C, "
                                   "or Stop in the web page), then remove it.")
        size = self.disk_bytes(run_id)
        trash = self.root / f".removing-{run_id}"
        os.replace(folder, trash)
        with closing(self._connect()) as con, con:
            con.execute("DELETE FROM runs WHERE id = ?", (run_id,))
        shutil.rmtree(trash)
        return size

    def _adopt(self, con: sqlite3.Connection, design_paths=None) -> None:
        """Index the run folders under the root that the index lacks (copied from another machine, or the index
        deleted), from their own design.json and metrics.json, so `runs`, `runs show` and `runs compare` see them."""
        known = {row[0] for row in con.execute("SELECT id FROM runs")}
        for design_path in sorted(self.root.glob("*/design.json")) if design_paths is None else design_paths:
            run_id = design_path.parent.name
            if run_id.startswith("."):  # a run being removed
                continue
            design = None if run_id in known else read_json_or_none(design_path)
            if not isinstance(design, dict):
                continue
            spec = design.get("spec") or {}
            metrics = read_json_or_none(design_path.parent / "metrics.json")
            metrics = metrics if isinstance(metrics, dict) else {}
            try:
                created = datetime.strptime(design.get("created", ""), "%Y-%m-%dT%H:%M:%S%z").timestamp()
            except (TypeError, ValueError):
                created = design_path.stat().st_mtime
            with con:
                con.execute("INSERT OR IGNORE INTO runs (id, created, status, device, request) VALUES (?, ?, ?, ?, ?)",
                            (run_id, created, "done" if metrics else "unfinished", spec.get("device"),
                             spec.get("request")))
                _set_metrics(con, run_id, metrics, None if metrics else
                             f"indexed from its folder; finish it with --resume {run_id}")

    def get(self, run_id: str) -> RunRecord:
        record = self.find(run_id)
        if record is not None:
            return record
        self.path(run_id)  # raises the helpful message when the folder is missing too
        raise NanofactoryError(f"Run {run_id!r} has a design.json that is not readable JSON "
                               f"({self.path(run_id) / 'design.json'}); restore it from a copy of the run.")

    def metrics(self, run_id: str) -> dict:
        path = self.path(run_id) / "metrics.json"
        metrics = read_json_or_none(path)
        if metrics is None and path.is_file():  # --resume makes it again (Run.is_done)
            log.warning("%s is not readable JSON; `nanofactory build --resume %s` makes it again", path, run_id)
        return metrics or {}


def _set_metrics(con: sqlite3.Connection, run_id: str, m: dict, message: str | None) -> None:
    con.execute(
        """UPDATE runs SET student_int8_accuracy = coalesce(?, student_int8_accuracy),
           oracle_int8_accuracy = coalesce(?, oracle_int8_accuracy), weight_bytes = coalesce(?, weight_bytes),
           sram_bytes = coalesce(?, sram_bytes), latency_ms = coalesce(?, latency_ms),
           seconds = coalesce(?, seconds), message = ? WHERE id = ?""",
        (m.get("student_int8_test_accuracy"), m.get("oracle_int8_test_accuracy"), m.get("weight_bytes"),
         m.get("sram_estimate_bytes"), m.get("latency_estimate_ms"),
         (m.get("timings_s") or {}).get("total"), message, run_id),
    )
