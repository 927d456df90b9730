"""Compile backends (a registry): each writes one artifact from a quantized graph and its plan."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from compilers.ir import Graph
from compilers.planner import MemoryPlan
from knowledge.registry import Registry

Backend = Callable[[Graph, MemoryPlan, Path, str], Path]
BACKENDS: Registry = Registry("compile backend")


def register_backend(name: str):
    return BACKENDS.register(name)


def create_backend(name: str) -> Backend:
    return BACKENDS.get(name)


def list_backends() -> list[str]:
    return BACKENDS.names()


@register_backend("tflite")
def tflite_backend(graph: Graph, plan: MemoryPlan, out_dir: Path, name: str) -> Path:
    """``model.tflite``: int8 flatbuffer for TFLite Micro and LiteRT."""
    from compilers.tflite_writer import write_tflite
    from knowledge.io import atomic_path

    path = Path(out_dir) / "model.tflite"
    with atomic_path(path) as tmp:
        Path(tmp).write_bytes(write_tflite(graph))
    return path


@register_backend("c")
def c_backend(graph: Graph, plan: MemoryPlan, out_dir: Path, name: str) -> Path:
    """``c/``: the C99 library, host harness and Makefile."""
    from compilers.c_emitter import emit_c

    return emit_c(graph, plan, Path(out_dir) / "c", name)


@register_backend("arduino")
def arduino_backend(graph: Graph, plan: MemoryPlan, out_dir: Path, name: str) -> Path:
    """``arduino/<library>/``: the C library as an Arduino library with a self-test sketch."""
    from compilers.arduino import emit_arduino

    folder = Path(out_dir) / "arduino"
    if folder.is_dir():  # one library per compile: a new name (another run) must not sit beside the old
        import shutil

        shutil.rmtree(folder)
    return emit_arduino(graph, plan, folder, name)
