"""`nanofactory runs`: list, show, compare and remove runs; one build of a run at a time."""

from __future__ import annotations

import json
import os
import re
import shutil

import pytest

from agent.cli import main
from knowledge.errors import NanofactoryError
from tests.test_cli import _error



def test_runs_empty_and_unknown(capsys, tmp_path):
    assert main(["runs", "--runs-dir", str(tmp_path)]) == 0
    assert "no runs" in capsys.readouterr().out
    assert main(["runs", "show", "nope", "--runs-dir", str(tmp_path)]) == 1
    assert "No run 'nope'" in _error(capsys)
    assert main(["runs", "show", "a", "b", "--runs-dir", str(tmp_path)]) == 1
    assert "`runs compare A B` shows several" in _error(capsys)


def test_runs_compare_shows_the_changes(capsys, tmp_path):
    for run_id, acc, recall, answers in [("20260101-000000-a", 0.80, 0.10, 0), ("20260101-000001-a", 0.85, 0.40, 200)]:
        folder = tmp_path / run_id
        folder.mkdir()
        (folder / "design.json").write_text("{}")
        (folder / "metrics.json").write_text(json.dumps({
            "device": "nRF52840", "student_int8_test_accuracy": acc, "labeling": {"human_labels": answers},
            "per_class": {"shirt": {"recall": recall, "precision": 0.5, "f1": recall},
                          "other": {"recall": 0.9, "precision": 0.9, "f1": 0.9}}, "weight_bytes": 2048}))
    assert main(["runs", "compare", "20260101-000000-a", "20260101-000001-a", "--runs-dir", str(tmp_path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    row = {re.split(r"\s{2,}", line.strip())[0]: line for line in lines}
    assert row["student int8 accuracy"].split()[-3:] == ["85.0", "%", "(+5.0)"]
    assert row["shirt recall"].endswith("40.0 % (+30.0)") and row["a person's answers"].endswith("200")
    assert row["mean F1 over the outputs"].split()[-5:] == ["50.0", "%", "65.0", "%", "(+15.0)"]
    assert "oracle int8 accuracy" in row and row["oracle int8 accuracy"].split()[-2:] == ["—", "—"]
    assert main(["runs", "compare", "20260101-000000-a", "--runs-dir", str(tmp_path)]) == 1
    assert "runs compare RUN_A RUN_B" in _error(capsys)
    assert main(["runs", "compare", "20260101-000000-a", "nope", "--runs-dir", str(tmp_path)]) == 1
    assert "No run 'nope'" in _error(capsys)


def test_runs_remove_deletes_folders_but_not_a_run_being_built(capsys, tmp_path, monkeypatch):
    import socket

    from agent.runs import BUILDING

    ids = ["20260101-000000-a", "20260101-000001-a", "20260101-000002-a"]
    for run_id in ids:
        (tmp_path / run_id / "data").mkdir(parents=True)
        (tmp_path / run_id / "design.json").write_text("{}")
        (tmp_path / run_id / "data" / "pool.npy").write_bytes(b"x" * 2**20)
    assert main(["runs", "--runs-dir", str(tmp_path)]) == 0
    listed = capsys.readouterr().out
    assert all(i in listed for i in ids)
    assert main(["runs", "remove", ids[0], "--runs-dir", str(tmp_path)]) == 1  # no terminal to ask in
    assert "add --yes to remove them without being asked" in _error(capsys)
    assert main(["runs", "remove", ids[0], "nope", "--yes", "--runs-dir", str(tmp_path)]) == 1
    assert "No run 'nope'" in _error(capsys) and (tmp_path / ids[0]).is_dir()  # nothing removed before every id is known
    (tmp_path / ids[1] / BUILDING).write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname()}))
    assert main(["runs", "remove", ids[1], "--yes", "--runs-dir", str(tmp_path)]) == 1
    assert f"is being built by process {os.getpid()}; stop that build first" in _error(capsys)
    monkeypatch.setattr("sys.stdin.isatty", lambda: True)
    monkeypatch.setattr("builtins.input", lambda prompt: "n")
    assert main(["runs", "remove", ids[0], "--runs-dir", str(tmp_path)]) == 0 and (tmp_path / ids[0]).is_dir()
    assert "nothing removed" in capsys.readouterr().out
    monkeypatch.setattr("builtins.input", lambda prompt: "y")
    assert main(["runs", "remove", ids[0], "--runs-dir", str(tmp_path)]) == 0
    assert "1.0 MB freed" in capsys.readouterr().out and not (tmp_path / ids[0]).exists()
    (tmp_path / ids[1] / BUILDING).write_text(json.dumps({"pid": 2**22 + 1, "host": socket.gethostname()}))  # killed
    assert main(["runs", "remove", ids[1], "--yes", "--runs-dir", str(tmp_path)]) == 0
    assert f"removed {ids[1]}" in capsys.readouterr().out
    shutil.rmtree(tmp_path / ids[2])  # deleted by hand: no longer listed
    assert main(["runs", "--runs-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert not any(i in out for i in ids) and not list(tmp_path.glob(".removing-*"))


def test_a_run_is_built_by_one_process_at_a_time(tmp_path):
    """A second `build --resume` of a run a live process is building stops before touching it."""
    import socket
    import subprocess

    from agent.pipeline import Run, execute
    from agent.runs import BUILDING, RunStore

    store = RunStore(tmp_path)
    (tmp_path / "20260101-000000-a").mkdir()
    other = subprocess.Popen(["sleep", "30"])
    try:
        (tmp_path / "20260101-000000-a" / BUILDING).write_text(json.dumps({"pid": other.pid,
                                                                           "host": socket.gethostname()}))
        with pytest.raises(NanofactoryError, match=f"being built by process {other.pid} already"):
            execute(Run(id="20260101-000000-a", dir=tmp_path / "20260101-000000-a", spec=None, plan=None), store)
    finally:
        other.kill()
        other.wait()
    assert (tmp_path / "20260101-000000-a" / BUILDING).is_file()  # the other build's marker stays
