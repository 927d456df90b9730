"""int8 quantization of the IR with TFLite's conventions, calibrated on data.

Weights: per-output-channel symmetric int8 (zero point 0, [-127, 127]). Activations:
per-tensor asymmetric int8 from the calibrated min/max (the range always holds 0).
Biases: int32 at scale input_scale * weight_scale. Requantization: a 31-bit fixed-point
multiplier and a shift per output channel, computed from float32 scales in double
exactly as TFLite Micro computes them when it prepares the same model, so the C
library, the numpy reference and TFLM produce the same bits.

Pooling and reshape outputs take their input's parameters, and the inputs of a
concatenation take the output's (TFLite's kernels copy those values unchanged); softmax
outputs use TFLite's fixed 1/256 scale.
"""

from __future__ import annotations

import numpy as np

from compilers.fixedpoint import activation_range, quantize_multiplier
from compilers.ir import SHARES_INPUT_QUANT, Graph, Quant
from knowledge.errors import NanofactoryError

SOFTMAX_QUANT = Quant(scale=float(np.float32(1 / 256)), zero_point=-128)


def activation_quant(lo: float, hi: float) -> Quant:
    lo, hi = min(float(lo), 0.0), max(float(hi), 0.0)
    if hi - lo < 1e-8:
        hi = lo + 1e-8
    scale = float(np.float32((hi - lo) / 255.0))
    zero_point = int(np.clip(round(-128 - lo / scale), -128, 127))
    return Quant(scale=scale, zero_point=zero_point)


def _tie_groups(graph: Graph) -> dict[str, str]:
    """Union-find over tensors that must share quantization parameters."""
    parent = {name: name for name in graph.tensors}

    def find(x: str) -> str:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for op in graph.ops:
        if op.kind in SHARES_INPUT_QUANT or op.kind == "concat":
            for name in op.inputs:
                parent[find(name)] = find(op.output)
    return {name: find(name) for name in graph.tensors}


def quantize_graph(graph: Graph, calibration: np.ndarray) -> Graph:
    """Quantize ``graph`` in place from float NHWC ``calibration`` inputs; returns it."""
    from compilers.reference import run_float

    for op in graph.ops:
        for what, array in (("weights", op.weight), ("biases", op.bias)):
            if array is not None and not np.isfinite(array).all():
                raise NanofactoryError(f"Layer {op.name or op.kind}'s {what} hold NaN or infinite values; the model "
                                       "did not train cleanly: retrain it, or export a checkpoint from before it diverged.")
    ranges: dict[str, list[float]] = {}
    for start in range(0, len(calibration), 256):
        for name, value in run_float(graph, calibration[start : start + 256], keep=True).items():
            lo, hi = float(value.min()), float(value.max())
            old = ranges.setdefault(name, [lo, hi])
            old[0], old[1] = min(old[0], lo), max(old[1], hi)

    groups = _tie_groups(graph)
    group_range: dict[str, list[float]] = {}
    for name, (lo, hi) in ranges.items():
        g = group_range.setdefault(groups[name], [lo, hi])
        g[0], g[1] = min(g[0], lo), max(g[1], hi)
    for name, tensor in graph.tensors.items():
        if not np.isfinite(group_range[groups[name]]).all():
            raise NanofactoryError(f"Tensor {name} reaches NaN or infinite values on the calibration inputs; "
                                   "calibrate on real, finite inputs preprocessed as the model expects.")
        tensor.quant = activation_quant(*group_range[groups[name]])
    for op in graph.ops:
        if op.kind == "softmax":
            graph.tensors[op.output].quant = SOFTMAX_QUANT

    for op in graph.ops:
        _prepare(graph, op)
    return graph


def _prepare(graph: Graph, op) -> None:
    """The op's int8 constants and requantization parameters, in ``op.extra``."""
    out = graph.tensors[op.output].quant
    ins = [graph.tensors[n].quant for n in op.inputs]
    op.extra["act_range"] = activation_range(op.act, out.scale, out.zero_point)
    if op.is_weighted:
        axis = 3 if op.kind == "dwconv" else 0
        reduce = tuple(i for i in range(op.weight.ndim) if i != axis)
        max_abs = np.abs(op.weight).max(axis=reduce)
        scale = np.where(max_abs > 0, max_abs / 127.0, 1.0).astype(np.float32)
        shape = [1] * op.weight.ndim
        shape[axis] = -1
        op.weight_scale = scale
        op.qweight = np.clip(np.round(op.weight / scale.reshape(shape)), -127, 127).astype(np.int8)
        bias_scale = scale.astype(np.float64) * np.float64(np.float32(ins[0].scale))
        op.qbias = np.clip(np.round(op.bias / bias_scale), -(2**31), 2**31 - 1).astype(np.int32)
        pairs = [quantize_multiplier(float(np.float32(ins[0].scale)) * float(s) / float(np.float32(out.scale)))
                 for s in scale]
        op.extra["multiplier"] = np.array([m for m, _ in pairs], np.int32)
        op.extra["shift"] = np.array([s for _, s in pairs], np.int32)
    elif op.kind == "add":
        left_shift = 20  # TFLite's headroom for int8 addition
        s1, s2 = float(np.float32(ins[0].scale)), float(np.float32(ins[1].scale))
        twice_max = 2 * float(np.float32(max(np.float32(s1), np.float32(s2))))
        op.extra["left_shift"] = left_shift
        op.extra["input_multipliers"] = [quantize_multiplier(s1 / twice_max), quantize_multiplier(s2 / twice_max)]
        op.extra["output_multiplier"] = quantize_multiplier(twice_max / ((1 << left_shift) * float(np.float32(out.scale))))
