"""Tiny seeded ONNX models for the compiler tests: two exported from torch, the rest written
node by node with ``onnx.helper`` (ops laid out exactly as wanted, and malformed models).

Every builder takes a ``numpy.random.Generator`` and returns an ``onnx.ModelProto`` whose one
input is ``input`` (batch dimension symbolic) and one output ``output``; :func:`save` writes it.
Weights are He-scaled so activations stay O(1) through a few layers.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

OPSET = 17
IR_VERSION = 8  # onnxruntime 1.x reads it; onnx's newest IR version may be ahead of the runtime


def save(model, path: Path) -> Path:
    import onnx

    onnx.save_model(model, str(path))
    return Path(path)


def input_shape(path: Path) -> tuple[int, ...]:
    """The (C, H, W) or (K,) of a model's input, batch left out."""
    import onnx

    dims = onnx.load(str(path)).graph.input[0].type.tensor_type.shape.dim
    return tuple(d.dim_value for d in dims[1:])


def _model(nodes, inits: dict[str, np.ndarray], in_shape: tuple[int, ...], out_shape: tuple[int, ...],
           opset: int = OPSET):
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    graph = helper.make_graph(
        nodes,
        "tiny",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", *in_shape])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["N", *out_shape])],
        initializer=[numpy_helper.from_array(np.asarray(v), k) for k, v in inits.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model)
    return model


def _conv(rng, inits: dict, name: str, x: str, out: str, cin: int, cout: int, k: int, group: int = 1, **attrs):
    """A Conv node with He-scaled OIHW weights and a small bias, registered in ``inits``."""
    from onnx import helper

    fan_in = cin // group * k * k
    inits[f"{name}.w"] = (rng.standard_normal((cout, cin // group, k, k)) * np.sqrt(2 / fan_in)).astype(np.float32)
    inits[f"{name}.b"] = (0.1 * rng.standard_normal(cout)).astype(np.float32)
    return helper.make_node("Conv", [x, f"{name}.w", f"{name}.b"], [out], name=name, kernel_shape=[k, k],
                            group=group, **attrs)


def _node(op: str, ins: list[str], out: str, name: str, **attrs):
    from onnx import helper

    return helper.make_node(op, ins, [out], name=name, **attrs)


# ---- models for the numeric tests ---------------------------------------------------------------


def pools_concat_flatten(rng):
    """Conv+ReLU, then MaxPool 2x2/2 and a padded AveragePool 3x3/2 (SAME, padding excluded) side by
    side, Concat on channels, Flatten of the 4x4 map and Gemm: the NCHW->NHWC column permutation."""
    inits: dict = {}
    nodes = [
        _conv(rng, inits, "conv", "input", "c", 3, 6, 3, pads=[1, 1, 1, 1]),
        _node("Relu", ["c"], "r", "relu"),
        _node("MaxPool", ["r"], "mp", "maxpool", kernel_shape=[2, 2], strides=[2, 2]),
        _node("AveragePool", ["r"], "ap", "avgpool", kernel_shape=[3, 3], strides=[2, 2], pads=[0, 0, 1, 1],
              count_include_pad=0),
        _node("Concat", ["mp", "ap"], "cat", "concat", axis=1),
        _node("Flatten", ["cat"], "flat", "flatten", axis=1),
    ]
    inits["fc.w"] = (rng.standard_normal((5, 12 * 4 * 4)) * np.sqrt(1 / 192)).astype(np.float32)
    inits["fc.b"] = (0.1 * rng.standard_normal(5)).astype(np.float32)
    nodes.append(_node("Gemm", ["flat", "fc.w", "fc.b"], "output", "fc", transB=1))
    return _model(nodes, inits, (3, 8, 8), (5,))


def relu6_matmul_softmax(rng):
    """Conv + Clip(0, 6), global average pool, Flatten, MatMul + Add + ReLU, Gemm, Softmax."""
    inits: dict = {"zero": np.array(0, np.float32), "six": np.array(6, np.float32)}
    nodes = [
        _conv(rng, inits, "conv", "input", "c", 2, 8, 3, pads=[1, 1, 1, 1]),
        _node("Clip", ["c", "zero", "six"], "c6", "relu6"),
        _node("GlobalAveragePool", ["c6"], "g", "gap"),
        _node("Flatten", ["g"], "f", "flatten", axis=1),
    ]
    inits["mm.w"] = (rng.standard_normal((8, 6)) * 0.5).astype(np.float32)  # MatMul takes (K, N)
    inits["mm.b"] = (0.1 * rng.standard_normal(6)).astype(np.float32)
    inits["fc.w"] = (rng.standard_normal((6, 4)) * 0.7).astype(np.float32)  # Gemm, transB=0
    inits["fc.b"] = (0.1 * rng.standard_normal(4)).astype(np.float32)
    nodes += [
        _node("MatMul", ["f", "mm.w"], "mm", "matmul"),
        _node("Add", ["mm", "mm.b"], "mmb", "matmul_bias"),
        _node("Relu", ["mmb"], "h", "relu"),
        _node("Gemm", ["h", "fc.w", "fc.b"], "logits", "fc"),
        _node("Softmax", ["logits"], "output", "softmax", axis=-1),
    ]
    return _model(nodes, inits, (2, 6, 6), (4,))


def batchnorm_depth_multiplier(rng):
    """Conv+ReLU, a standalone BatchNormalization (nothing to fold into: it follows a ReLU), a
    depthwise conv with depth multiplier 2 (groups=C, 2C outputs) + ReLU, global pool, Gemm."""
    inits: dict = {
        "bn.scale": rng.uniform(0.5, 1.5, 4).astype(np.float32),
        "bn.shift": rng.uniform(-0.3, 0.3, 4).astype(np.float32),
        "bn.mean": rng.uniform(0.0, 0.5, 4).astype(np.float32),
        "bn.var": rng.uniform(0.5, 2.0, 4).astype(np.float32),
        "fc.w": (rng.standard_normal((3, 8)) * 0.5).astype(np.float32),
        "fc.b": np.zeros(3, np.float32),
    }
    nodes = [
        _conv(rng, inits, "conv", "input", "c", 2, 4, 3, pads=[1, 1, 1, 1]),
        _node("Relu", ["c"], "r", "relu"),
        _node("BatchNormalization", ["r", "bn.scale", "bn.shift", "bn.mean", "bn.var"], "bn", "bn", epsilon=1e-3),
        _conv(rng, inits, "dw", "bn", "d", 4, 8, 3, group=4, pads=[1, 1, 1, 1]),
        _node("Relu", ["d"], "dr", "dw_relu"),
        _node("GlobalAveragePool", ["dr"], "g", "gap"),
        _node("Flatten", ["g"], "f", "flatten", axis=1),
        _node("Gemm", ["f", "fc.w", "fc.b"], "output", "fc", transB=1),
    ]
    return _model(nodes, inits, (2, 7, 7), (3,))


def strided_padding(rng):
    """Convolutions whose padding is not TFLite's SAME, so the writer must insert PAD ops: a 3x3/2
    conv padded 1 all round on an even input (PyTorch's style), an asymmetric (top 1, left 0,
    bottom 0, right 1) depthwise 3x3/2, then a 3x3/1 SAME conv that needs no PAD."""
    inits: dict = {"fc.w": (rng.standard_normal((3, 6)) * 0.5).astype(np.float32),
                   "fc.b": np.zeros(3, np.float32)}
    nodes = [
        _conv(rng, inits, "conv_s2", "input", "a", 3, 4, 3, pads=[1, 1, 1, 1], strides=[2, 2]),
        _node("Relu", ["a"], "ar", "relu_a"),
        _conv(rng, inits, "dw_s2", "ar", "b", 4, 4, 3, group=4, pads=[1, 0, 0, 1], strides=[2, 2]),
        _node("Relu", ["b"], "br", "relu_b"),
        _conv(rng, inits, "conv_same", "br", "c", 4, 6, 3, pads=[1, 1, 1, 1]),
        _node("Relu", ["c"], "cr", "relu_c"),
        _node("GlobalAveragePool", ["cr"], "g", "gap"),
        _node("Flatten", ["g"], "f", "flatten", axis=1),
        _node("Gemm", ["f", "fc.w", "fc.b"], "output", "fc", transB=1),
    ]
    return _model(nodes, inits, (3, 10, 10), (3,))


# ---- models the compiler must refuse ------------------------------------------------------------


def with_unsupported(rng, op: str = "Sigmoid"):
    """Conv, then a node named ``gate`` of type ``op`` (an activation the runtime lacks)."""
    inits: dict = {}
    nodes = [_conv(rng, inits, "conv", "input", "c", 2, 4, 3), _node(op, ["c"], "output", "gate")]
    return _model(nodes, inits, (2, 5, 5), (4, 3, 3))


def grouped_conv(rng):
    inits: dict = {}
    return _model([_conv(rng, inits, "gconv", "input", "output", 4, 4, 3, group=2)], inits, (4, 6, 6), (4, 4, 4))


def dilated_conv(rng):
    inits: dict = {}
    nodes = [_conv(rng, inits, "dilated", "input", "output", 2, 4, 3, dilations=[2, 2])]
    return _model(nodes, inits, (2, 9, 9), (4, 5, 5))


def clip_negative(rng):
    inits: dict = {"lo": np.array(-1, np.float32), "hi": np.array(6, np.float32)}
    nodes = [_conv(rng, inits, "conv", "input", "c", 2, 4, 3), _node("Clip", ["c", "lo", "hi"], "output", "clip_neg")]
    return _model(nodes, inits, (2, 5, 5), (4, 3, 3))


def already_quantized(rng):
    """A QDQ convolution, as onnxruntime's quantize_static writes one: 8-bit weights behind a
    DequantizeLinear, the input quantized and dequantized."""
    inits: dict = {"s": np.array(0.02, np.float32), "z": np.array(0, np.uint8),
                   "wq": rng.integers(0, 256, (4, 2, 3, 3)).astype(np.uint8), "ws": np.array(0.01, np.float32),
                   "wz": np.array(128, np.uint8)}
    nodes = [_node("QuantizeLinear", ["input", "s", "z"], "xq", "quant_in"),
             _node("DequantizeLinear", ["xq", "s", "z"], "xd", "dequant_in"),
             _node("DequantizeLinear", ["wq", "ws", "wz"], "w", "dequant_w"),
             _node("Conv", ["xd", "w"], "output", "conv")]
    return _model(nodes, inits, (2, 5, 5), (4, 3, 3))


def old_opset(rng):
    inits: dict = {}
    nodes = [_conv(rng, inits, "conv", "input", "c", 2, 4, 3), _node("Relu", ["c"], "output", "relu")]
    return _model(nodes, inits, (2, 5, 5), (4, 3, 3), opset=11)


# ---- models exported from torch (compilers.onnx_export folds BatchNorm) -------------------------


def _randomize_batchnorm(module, input_shape: tuple[int, ...], seed: int) -> None:
    """Random BN scales and shifts, and running statistics measured on random inputs (train mode,
    one batch), so every layer passes on an O(1) signal that depends on the input; at PyTorch's
    default statistics (mean 0, variance 1) the signal of a random 11-layer student fades to a
    constant output, and int8 comparisons on it would prove nothing."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    for m in module.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            n = m.num_features
            m.weight.data.copy_(0.5 + torch.rand(n, generator=gen))
            m.bias.data.copy_(0.6 * torch.rand(n, generator=gen) - 0.3)
            m.reset_running_stats()
            m.momentum = None  # a cumulative average: one batch sets the statistics
    module.train()
    with torch.no_grad():
        module(torch.randn(64, *input_shape, generator=gen))
    module.eval()


def export_student(path: Path, seed: int = 0) -> Path:
    """tools.student's DS-CNN at width 4 on 16x16x1, 3 classes, random weights and BN statistics."""
    import torch

    from compilers.onnx_export import export_onnx
    from tools.student import build_student, ds_cnn

    torch.manual_seed(seed)
    model = build_student(ds_cnn(4, 16, 1, 3))
    _randomize_batchnorm(model, (1, 16, 16), seed)
    return export_onnx(model, (1, 16, 16), path)


def export_residual(path: Path, seed: int = 0) -> Path:
    """Two residual blocks on 3x16x16: a 3x3/2 conv (PyTorch padding, so a PAD op) with a 1x1/2
    projection shortcut, then an identity shortcut (the block input is read twice); ReLU after
    each Add; BatchNorm after every conv; global average pool and a linear layer."""
    import torch
    from torch import nn

    from compilers.onnx_export import export_onnx

    class Residual(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1, bias=False), nn.BatchNorm2d(8), nn.ReLU())
            self.b = nn.Sequential(nn.Conv2d(8, 8, 3, 1, 1, bias=False), nn.BatchNorm2d(8))
            self.shortcut = nn.Sequential(nn.Conv2d(3, 8, 1, 2, bias=False), nn.BatchNorm2d(8))
            self.c = nn.Sequential(nn.Conv2d(8, 8, 3, 1, 1, bias=False), nn.BatchNorm2d(8))
            self.head = nn.Linear(8, 4)

        def forward(self, x):
            y = torch.relu(self.b(self.a(x)) + self.shortcut(x))
            y = torch.relu(self.c(y) + y)
            return self.head(torch.flatten(nn.functional.adaptive_avg_pool2d(y, 1), 1))

    torch.manual_seed(seed)
    model = Residual()
    _randomize_batchnorm(model, (3, 16, 16), seed)
    return export_onnx(model, (3, 16, 16), path)


def linear_as(rng, kind: str):
    """One 16 -> 8 linear layer, as a Gemm on a vector (kind "gemm") or as a 1x1 Conv on a 16x1x1 image
    (kind "conv1x1"); the same seed gives the same weights either way."""
    w = (rng.standard_normal((8, 16)) * 0.35).astype(np.float32)
    b = (0.1 * rng.standard_normal(8)).astype(np.float32)
    if kind == "gemm":
        inits = {"w": w, "b": b}
        return _model([_node("Gemm", ["input", "w", "b"], "output", "fc", transB=1)], inits, (16,), (8,))
    inits = {"w": w.reshape(8, 16, 1, 1), "b": b}
    return _model([_node("Conv", ["input", "w", "b"], "output", "fc", kernel_shape=[1, 1])], inits, (16, 1, 1),
                  (8, 1, 1))
