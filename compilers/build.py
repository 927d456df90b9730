"""``compile``: ONNX + calibration data -> quantized IR, memory plan, ``model.tflite`` and the C
library, in one folder with ``compile.json`` (what was built, with the exact arena).

The folder keeps the quantized graph (``graph.pkl``) so ``verify`` checks the artifacts
against the same bits that produced them.
"""

from __future__ import annotations

import logging
import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from compilers.ir import Graph, ImageInput
from compilers.planner import MemoryPlan, plan_memory
from knowledge.errors import NanofactoryError
from knowledge.io import atomic_path, write_json_atomic, write_text_atomic

log = logging.getLogger(__name__)


class CompileConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    calibration_samples: int = Field(512, ge=1)
    backends: list[str] = Field(default_factory=lambda: ["tflite", "c", "arduino"])


@dataclass
class Compiled:
    dir: Path
    graph: Graph
    plan: MemoryPlan

    @property
    def summary(self) -> dict:
        return load_summary(self.dir)


def nchw_to_nhwc(x: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(x.transpose(0, 2, 3, 1)) if x.ndim == 4 else np.asarray(x)


def check_calibration(graph: Graph, calibration: np.ndarray) -> None:
    """Fail in one sentence when calibration inputs do not have the model's input shape."""
    shape = tuple(graph.input_shape[1:])
    if len(shape) == 3:  # the graph is NHWC, calibration NCHW
        shape = (shape[2], shape[0], shape[1])
    if tuple(calibration.shape[1:]) != shape:
        raise NanofactoryError(
            f"Calibration inputs have shape {tuple(calibration.shape)}; the model takes "
            f"(N, {', '.join(map(str, shape))}) (N inputs, channels first, preprocessed as the model expects).")


def check_image_input(graph: Graph, image: ImageInput) -> None:
    """Fail in one sentence when image inputs cannot apply: nf_io takes square gray or RGB inputs."""
    shape = graph.input_shape
    if len(shape) != 4 or shape[1] != shape[2] or shape[3] not in (1, 3):
        raise NanofactoryError(f"Image inputs need a square NHWC input of 1 or 3 channels; the model takes "
                               f"{tuple(shape)}.")
    if len(image.labels) != int(np.prod(graph.output_shape)):
        raise NanofactoryError(f"{len(image.labels)} labels for {int(np.prod(graph.output_shape))} outputs; "
                               "give one label per output.")


def compile_graph(graph: Graph, calibration: np.ndarray, out_dir: Path, name: str = "model",
                  config: CompileConfig | None = None, image: ImageInput | None = None) -> Compiled:
    """Quantize ``graph`` on float NCHW ``calibration`` inputs and write every backend's artifact.
    ``image``: how inputs are made from images (the C library then converts camera frames)."""
    from compilers.backends import create_backend
    from compilers.int8 import quantize_graph
    from compilers.profile import profile_layers

    config = config or CompileConfig()
    backends = [create_backend(b) for b in config.backends]  # unknown names fail before any work
    if len(calibration) == 0:
        raise NanofactoryError("No calibration data: the compiler needs a few representative inputs.")
    check_calibration(graph, calibration)
    if image is not None:
        check_image_input(graph, image)
        graph.image = image
    quantize_graph(graph, nchw_to_nhwc(calibration[: config.calibration_samples]).astype(np.float32))
    graph.sample_input = graph.tensors[graph.input].quant.quantize(nchw_to_nhwc(calibration[:1]))[0]
    plan = plan_memory(graph)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for backend in backends:
        backend(graph, plan, out_dir, name)
    if image is not None:  # the .tflite's outputs by name, one per line, as TFLite tools read them
        write_text_atomic(out_dir / "labels.txt", "".join(f"{label}\n" for label in image.labels))
    with atomic_path(out_dir / "graph.pkl") as tmp:
        tmp.write_bytes(pickle.dumps(graph, protocol=pickle.HIGHEST_PROTOCOL))
    qi, qo = graph.tensors[graph.input].quant, graph.tensors[graph.output].quant
    summary = {
        "name": name,
        "source": graph.source,
        "backends": config.backends,
        "ops": len(graph.ops),
        "input": {"shape_nhwc": list(graph.input_shape), "scale": qi.scale, "zero_point": qi.zero_point},
        "output": {"shape": list(graph.output_shape), "scale": qo.scale, "zero_point": qo.zero_point},
        "arena_bytes": plan.arena_bytes,
        "macs": int(sum(graph.macs(op) for op in graph.ops)),
        "weight_bytes": int(sum(graph.weight_bytes(op) for op in graph.ops)),
        "params": int(sum(op.weight.size + op.bias.size for op in graph.ops if op.is_weighted)),
        "layers": profile_layers(graph),
        "compiler": compiler_fingerprint(),
    }
    if image is not None:
        summary["image_input"] = {"labels": image.labels, "pixel_offset": image.pixel_offset,
                                  "pixel_divisor": image.pixel_divisor}
    write_json_atomic(out_dir / "compile.json", summary)
    return Compiled(out_dir, graph, plan)


def compile_onnx(onnx_path: Path, calibration: np.ndarray, out_dir: Path, name: str = "model",
                 config: CompileConfig | None = None, image: ImageInput | None = None) -> Compiled:
    """Read ONNX, then :func:`compile_graph`. A bad model fails before anything is written."""
    from compilers.onnx_reader import read_onnx

    return compile_graph(read_onnx(onnx_path), calibration, out_dir, name, config, image)


def compiler_fingerprint() -> str:
    """A hash of the sources that write a compiled folder (the compiler's Python and the C it copies into
    every library; not verify's, which reads it): a folder written by another version holds other
    kernels and harnesses than verify expects."""
    import hashlib

    root = Path(__file__).parent
    readers = {"verify.py", "profile.py"}
    digest = hashlib.sha256()
    for f in sorted(p for p in root.rglob("*") if p.is_file() and p.suffix in (".py", ".c", ".h")
                    and p.name not in readers and p.parent.name != "qemu"):
        digest.update(f.relative_to(root).as_posix().encode() + b"\0" + f.read_bytes())
    return digest.hexdigest()[:16]


def load_compiled(out_dir: Path) -> Compiled:
    """A compiled folder as :func:`compile_graph` wrote it, by this version of the compiler."""
    out_dir = Path(out_dir)
    path = out_dir / "graph.pkl"
    if not path.is_file():
        raise NanofactoryError(f"{out_dir} holds no compiled model; run `nanofactory compile` first.")
    if load_summary(out_dir).get("compiler") != compiler_fingerprint():
        raise NanofactoryError(f"{out_dir} was compiled by another version of Nanofactory's compiler; compile it "
                               "again (`nanofactory compile RUN`, or `--onnx` as before) and then verify.")
    graph = pickle.loads(path.read_bytes())
    return Compiled(out_dir, graph, plan_memory(graph))


def load_summary(out_dir: Path) -> dict:
    import json

    return json.loads((Path(out_dir) / "compile.json").read_text())
