"""The compiler's graph IR: a straight line of operators over NHWC tensors, batch 1.

This is the form every backend reads: the numpy interpreters (float and int8), the
memory planner, the ``.tflite`` writer and the C emitter. Weights live on the operator
in TFLite's layouts (conv OHWI, depthwise 1HWO, fully connected OI), so no backend
transposes anything. Quantization parameters are filled in by ``compilers.int8``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np

OpKind = Literal["conv", "dwconv", "fc", "add", "avgpool", "maxpool", "reshape", "concat", "softmax"]
Activation = Literal["none", "relu", "relu6"]

# Operators whose int8 output must carry its input's scale and zero point: TFLite's kernels
# for these copy or compare values without requantizing them.
SHARES_INPUT_QUANT = ("avgpool", "maxpool", "reshape")


@dataclass
class Quant:
    """Affine int8 quantization: real = scale * (q - zero_point)."""

    scale: float
    zero_point: int

    def quantize(self, x: np.ndarray) -> np.ndarray:
        q = np.round(np.asarray(x, np.float64) / self.scale) + self.zero_point
        return np.clip(q, -128, 127).astype(np.int8)

    def dequantize(self, q: np.ndarray) -> np.ndarray:
        return (q.astype(np.float32) - self.zero_point) * np.float32(self.scale)


@dataclass
class Tensor:
    name: str
    shape: tuple[int, ...]
    quant: Quant | None = None

    @property
    def size(self) -> int:
        return int(np.prod(self.shape))


@dataclass
class Op:
    kind: OpKind
    name: str  # the source node's name, for messages
    inputs: list[str]
    output: str
    act: Activation = "none"
    kernel: tuple[int, int] = (1, 1)
    stride: tuple[int, int] = (1, 1)
    pads: tuple[int, int, int, int] = (0, 0, 0, 0)  # top, left, bottom, right
    depth_multiplier: int = 1
    axis: int = -1  # concat
    weight: np.ndarray | None = None  # float32: conv OHWI, dwconv 1HWO, fc OI
    bias: np.ndarray | None = None  # float32 [out channels]
    # int8 parameters, set by compilers.int8.quantize_graph
    qweight: np.ndarray | None = None
    weight_scale: np.ndarray | None = None  # per output channel
    qbias: np.ndarray | None = None  # int32
    extra: dict = field(default_factory=dict)

    @property
    def is_weighted(self) -> bool:
        return self.kind in ("conv", "dwconv", "fc")


@dataclass
class ImageInput:
    """How the model's input is made from images, when the compiler is told (a run knows; a bare ONNX
    file does not): the C library then converts camera frames to inputs (``c/nf_io.c``) and names the
    outputs. A uint8 pixel p enters the network as (p - pixel_offset) / pixel_divisor."""

    labels: list[str]
    pixel_offset: float = 128.0
    pixel_divisor: float = 128.0

    def pixel_lut(self, quant: Quant) -> np.ndarray:
        """(256,) int8: each pixel value's quantized input, computed as training computes it (float32)."""
        real = (np.arange(256, dtype=np.float32) - np.float32(self.pixel_offset)) / np.float32(self.pixel_divisor)
        return quant.quantize(real)


@dataclass
class Graph:
    input: str
    output: str
    tensors: dict[str, Tensor]
    ops: list[Op]
    source: str = ""
    image: ImageInput | None = None  # set by compile_graph when the inputs are images of known preparation
    sample_input: np.ndarray | None = None  # int8 NHWC, one calibration input: the C library's self-test

    def shape(self, name: str) -> tuple[int, ...]:
        return self.tensors[name].shape

    @property
    def input_shape(self) -> tuple[int, ...]:
        return self.tensors[self.input].shape

    @property
    def output_shape(self) -> tuple[int, ...]:
        return self.tensors[self.output].shape

    @property
    def quantized(self) -> bool:
        return all(t.quant is not None for t in self.tensors.values())

    def consumers(self, name: str) -> list[Op]:
        return [op for op in self.ops if name in op.inputs]

    def macs(self, op: Op) -> int:
        out = self.tensors[op.output]
        if op.kind == "conv":
            return out.size * int(np.prod(op.weight.shape[1:]))
        if op.kind == "dwconv":
            return out.size * op.kernel[0] * op.kernel[1]
        if op.kind == "fc":
            return int(op.weight.size)
        if op.kind == "avgpool":
            return out.size * op.kernel[0] * op.kernel[1]
        return 0

    def weight_bytes(self, op: Op) -> int:
        """Flash for the op's constants: int8 weights, int32 bias, int32 multiplier and shift per channel."""
        if not op.is_weighted:
            return 0
        channels = op.weight.shape[0] if op.kind != "dwconv" else op.weight.shape[3]
        return int(op.weight.size) + 4 * channels + 8 * channels


def conv_out(size: int, k: int, stride: int, pad_before: int, pad_after: int) -> int:
    return (size + pad_before + pad_after - k) // stride + 1


def same_pads(size: int, k: int, stride: int) -> tuple[int, int, int]:
    """TFLite SAME padding: (output size, pad before, pad after); the odd pixel goes after."""
    out = -(-size // stride)
    total = max((out - 1) * stride + k - size, 0)
    return out, total // 2, total - total // 2
