"""numpy interpreters of the IR: float32 (calibration, and a check of the ONNX reader) and
int8 (the bit-exact reference the C library and TFLite Micro are verified against).

Both take batches (N, H, W, C) and run the whole batch at once. Integer dot products run
as float64 matrix products: every partial sum stays far below 2**53, so they are exact.
"""

from __future__ import annotations

import numpy as np

from compilers.fixedpoint import (
    multiply_by_quantized_multiplier,
    rounding_divide_by_pot,
    saturating_rounding_doubling_high_mul,
)
from compilers.ir import Graph, Op


def _windows(x: np.ndarray, op: Op, pad_value) -> np.ndarray:
    """(N, OH, OW, kh, kw, C) views of the padded input."""
    top, left, bottom, right = op.pads
    if any(op.pads):
        x = np.pad(x, ((0, 0), (top, bottom), (left, right), (0, 0)), constant_values=pad_value)
    kh, kw = op.kernel
    win = np.lib.stride_tricks.sliding_window_view(x, (kh, kw), axis=(1, 2))  # N, OH', OW', C, kh, kw
    win = win[:, :: op.stride[0], :: op.stride[1]]
    return win.transpose(0, 1, 2, 4, 5, 3)


def _valid_counts(shape_hw: tuple[int, int], op: Op) -> np.ndarray:
    """How many window taps fall inside the unpadded input, per output position."""
    ones = np.ones((1, *shape_hw, 1), np.float64)
    return _windows(ones, op, 0.0).sum(axis=(3, 4, 5))[0]  # OH, OW


def _conv(x: np.ndarray, op: Op, w: np.ndarray, pad_value) -> np.ndarray:
    win = _windows(x, op, pad_value)
    n, oh, ow, kh, kw, c = win.shape
    if op.kind == "conv":
        cols = win.reshape(n * oh * ow, kh * kw * c).astype(np.float64)
        return (cols @ w.reshape(w.shape[0], -1).astype(np.float64).T).reshape(n, oh, ow, -1)
    # depthwise: output channel o reads input channel o // depth_multiplier
    m = op.depth_multiplier
    win = np.repeat(win, m, axis=5) if m > 1 else win
    return np.einsum("nyxhwc,hwc->nyxc", win.astype(np.float64), w[0].astype(np.float64), optimize=True)


def _pool_float(x: np.ndarray, op: Op) -> np.ndarray:
    if op.kind == "maxpool":
        return _windows(x, op, -np.inf).max(axis=(3, 4))
    total = _windows(x, op, 0.0).sum(axis=(3, 4))
    return total / _valid_counts(x.shape[1:3], op)[None, :, :, None]


def run_float(graph: Graph, x: np.ndarray, keep: bool = False):
    """Float32 outputs for NHWC inputs; with ``keep`` every tensor by name."""
    values = {graph.input: np.asarray(x, np.float32)}
    for op in graph.ops:
        a = values[op.inputs[0]]
        if op.kind in ("conv", "dwconv"):
            y = _conv(a, op, op.weight, 0.0) + op.bias
        elif op.kind == "fc":
            y = a.astype(np.float64) @ op.weight.T.astype(np.float64) + op.bias
        elif op.kind == "add":
            y = a + values[op.inputs[1]]
        elif op.kind in ("avgpool", "maxpool"):
            y = _pool_float(a, op)
        elif op.kind == "reshape":
            y = a.reshape(len(a), *graph.shape(op.output)[1:])
        elif op.kind == "concat":
            y = np.concatenate([values[n] for n in op.inputs], axis=op.axis)
        elif op.kind == "softmax":
            e = np.exp(a - a.max(axis=-1, keepdims=True))
            y = e / e.sum(axis=-1, keepdims=True)
        else:  # pragma: no cover - the reader only creates the kinds above
            raise ValueError(op.kind)
        if op.act == "relu":
            y = np.maximum(y, 0)
        elif op.act == "relu6":
            y = np.clip(y, 0, 6)
        values[op.output] = y.reshape(len(a), *graph.shape(op.output)[1:]).astype(np.float32)
    return values if keep else values[graph.output]


def run_int8(graph: Graph, x: np.ndarray, keep: bool = False):
    """int8 outputs for int8 NHWC inputs, bit-exact with TFLite Micro's reference kernels."""
    if not graph.quantized:
        raise ValueError("quantize the graph first (compilers.int8.quantize_graph)")
    values = {graph.input: np.asarray(x, np.int8)}
    for op in graph.ops:
        a = values[op.inputs[0]]
        qa = graph.tensors[op.inputs[0]].quant
        qo = graph.tensors[op.output].quant
        lo, hi = op.extra["act_range"]
        if op.is_weighted:
            centered = a.astype(np.int64) - qa.zero_point  # input + input_offset
            if op.kind == "fc":
                acc = centered.astype(np.float64) @ op.qweight.T.astype(np.float64)
            else:
                acc = _conv(centered, op, op.qweight, 0)  # padding contributes 0, as TFLite skips it
            acc = acc.astype(np.int64) + op.qbias
            y = multiply_by_quantized_multiplier(acc, op.extra["multiplier"], op.extra["shift"]) + qo.zero_point
        elif op.kind == "add":
            b = values[op.inputs[1]]
            qb = graph.tensors[op.inputs[1]].quant
            (m1, s1), (m2, s2) = op.extra["input_multipliers"]
            shift = 1 << op.extra["left_shift"]
            x1 = rounding_divide_by_pot(saturating_rounding_doubling_high_mul(
                (a.astype(np.int64) - qa.zero_point) * shift, m1), -s1)
            x2 = rounding_divide_by_pot(saturating_rounding_doubling_high_mul(
                (b.astype(np.int64) - qb.zero_point) * shift, m2), -s2)
            mo, so = op.extra["output_multiplier"]
            y = rounding_divide_by_pot(saturating_rounding_doubling_high_mul(x1 + x2, mo), -so) + qo.zero_point
        elif op.kind == "maxpool":
            y = _windows(a, op, -128).max(axis=(3, 4)).astype(np.int64)
        elif op.kind == "avgpool":
            total = _windows(a.astype(np.int64), op, 0).sum(axis=(3, 4))
            count = _valid_counts(a.shape[1:3], op).astype(np.int64)[None, :, :, None]
            # TFLite: round half away from zero, then C++ truncating division
            num = np.where(total > 0, total + count // 2, total - count // 2)
            y = np.sign(num) * (np.abs(num) // count)
        elif op.kind == "reshape":
            y = a.reshape(len(a), *graph.shape(op.output)[1:])
        elif op.kind == "concat":
            y = np.concatenate([values[n] for n in op.inputs], axis=op.axis)
        elif op.kind == "softmax":
            from compilers.softmax import softmax_int8

            y = softmax_int8(a, qa.scale)
        else:  # pragma: no cover
            raise ValueError(op.kind)
        values[op.output] = np.clip(y, lo, hi).astype(np.int8).reshape(len(a), *graph.shape(op.output)[1:])
    return values if keep else values[graph.output]
