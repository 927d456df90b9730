"""Importing the packages stays cheap: torch, faiss and transformers load only inside the functions that use them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
MODULES = ["agent", "tools", "knowledge", "generators", "compilers",
           "knowledge.teachers", "knowledge.labeling", "knowledge.selection", "agent.cli", "agent.cli_data",
           "agent.review", "agent.spec"]
HEAVY = ["torch", "faiss", "transformers", "sentence_transformers"]


def loaded_after_import(statement: str) -> list[str]:
    """The heavy modules in sys.modules after ``statement`` runs in a fresh interpreter."""
    code = f"import json, sys\n{statement}\nprint(json.dumps(sorted(m for m in {HEAVY!r} if m in sys.modules)))"
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_package_imports_are_cheap():
    assert loaded_after_import(f"import {', '.join(MODULES)}") == []


def test_the_probe_sees_heavy_imports():
    """The check above would notice: importing the training module's dependency does load torch."""
    assert loaded_after_import("import torch") == ["torch"]


@pytest.mark.parametrize("module", ["tools.train", "tools.cost", "tools.sizing", "knowledge.index",
                                    "knowledge.pools", "compilers.onnx_export", "tools.quantize"])
def test_library_modules_import_cheaply(module: str):
    assert loaded_after_import(f"import {module}") == []
