"""ONNX (opset >= 13) to the compiler's IR, NCHW to NHWC, batch 1.

On the way in: constants are folded (any node whose inputs are all constant is evaluated
with onnx's reference evaluator), BatchNormalization is folded into the convolution or
linear layer before it (or becomes a 1x1 depthwise convolution when it stands alone),
ReLU/ReLU6/Clip are fused into the op that produces their input, Dropout and Identity
vanish, and MatMul + Add becomes one fully connected layer. An operator the runtime cannot
run stops the read with its type and node name.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from compilers.ir import Graph, Op, Tensor, conv_out, same_pads
from knowledge.errors import NanofactoryError

SUPPORTED = (
    "Conv", "Gemm", "MatMul", "Add", "Relu", "Clip", "AveragePool", "GlobalAveragePool", "MaxPool",
    "Reshape", "Flatten", "Concat", "Softmax", "BatchNormalization", "ReduceMean", "Dropout", "Identity",
)
MIN_OPSET = 13
NCHW_TO_NHWC_AXIS = {0: 0, 1: 3, 2: 1, 3: 2}


# ops of a model quantized already (QDQ, or onnxruntime's integer operators)
QUANTIZED_OPS = {"QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear", "QLinearConv", "QLinearMatMul",
                 "ConvInteger", "MatMulInteger"}


class UnsupportedModel(NanofactoryError):
    """The ONNX file is valid but uses something the int8 runtime does not run."""


def read_onnx(path: Path) -> Graph:
    """The IR of the ONNX model at ``path``; raises NanofactoryError naming what is wrong."""
    import onnx

    path = Path(path)
    if not path.is_file():
        raise NanofactoryError(f"No ONNX model at {path}; pass the path of a .onnx file or a run folder.")
    try:
        model = onnx.load(str(path))
        onnx.checker.check_model(model)
    except Exception as exc:  # noqa: BLE001 - onnx raises DecodeError, ValidationError, ... for a broken file
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise NanofactoryError(f"{path} is not a valid ONNX model ({first}); re-export it.") from None
    return _Reader(model, str(path)).read()


class _Reader:
    def __init__(self, model, source: str):
        self.model = model
        self.source = source
        self.graph = model.graph
        self.consts: dict[str, np.ndarray] = {}
        self.alias: dict[str, str] = {}  # onnx tensor -> IR tensor
        self.flat_from: dict[str, tuple[int, int, int]] = {}  # IR tensor flattened from NHWC (h, w, c)
        self.tensors: dict[str, Tensor] = {}
        self.ops: list[Op] = []
        self.uses: dict[str, int] = {}

    # ---- helpers --------------------------------------------------------------------------

    def fail(self, node, why: str) -> UnsupportedModel:
        return UnsupportedModel(f"Cannot compile {self.source}: node {node.name or '(unnamed)'!r} "
                                f"({node.op_type}) {why}.")

    def attr(self, node, name: str, default=None):
        import onnx

        for a in node.attribute:
            if a.name == name:
                return onnx.helper.get_attribute_value(a)
        return default

    def const(self, name: str) -> np.ndarray | None:
        return self.consts.get(name)

    def ir(self, name: str) -> str:
        return self.alias.get(name, name)

    def shape(self, name: str) -> tuple[int, ...]:
        return self.tensors[self.ir(name)].shape

    def add_op(self, op: Op, shape: tuple[int, ...]) -> Op:
        self.tensors[op.output] = Tensor(op.output, tuple(int(s) for s in shape))
        self.ops.append(op)
        return op

    def single_use_producer(self, name: str) -> Op | None:
        """The op producing ``name`` if nothing else reads it (so it may absorb what follows)."""
        ir = self.ir(name)
        if self.uses.get(name, 0) != 1 or not self.ops or self.ops[-1].output != ir:
            return None
        return self.ops[-1]

    # ---- reading --------------------------------------------------------------------------

    def read(self) -> Graph:
        import onnx

        opset = next((o.version for o in self.model.opset_import if o.domain in ("", "ai.onnx")), 0)
        if opset < MIN_OPSET:
            raise UnsupportedModel(f"Cannot compile {self.source}: opset {opset} is older than {MIN_OPSET}; "
                                   f"re-export with opset {MIN_OPSET} or newer.")
        quantized = [n.op_type for n in self.graph.node if n.op_type in QUANTIZED_OPS]
        if quantized:
            kinds = "/".join(sorted(set(quantized)))
            raise UnsupportedModel(
                f"Cannot compile {self.source}: it is already quantized ({len(quantized)} {kinds} nodes), and the "
                f"compiler quantizes with TFLite's conventions itself; pass the float model it came from (a run's "
                f"model.onnx, not model_int8.onnx) and calibration inputs.")
        for init in self.graph.initializer:
            self.consts[init.name] = onnx.numpy_helper.to_array(init)
        inputs = [i for i in self.graph.input if i.name not in self.consts]
        if len(inputs) != 1 or len(self.graph.output) != 1:
            raise UnsupportedModel(f"Cannot compile {self.source}: it has {len(inputs)} inputs and "
                                   f"{len(self.graph.output)} outputs; the runtime takes one of each.")
        self.input = inputs[0].name
        written = [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?")
                   for d in inputs[0].type.tensor_type.shape.dim]
        if any(not isinstance(d, int) for d in written[1:]):  # the batch may vary; the rest sizes the arena
            raise UnsupportedModel(f"Cannot compile {self.source}: input {self.input!r} has sizes {written} not fixed "
                                   "at export; export it with a fixed input size (dynamic_axes for the batch only).")
        dims = [d if isinstance(d, int) else 1 for d in written]
        if len(dims) == 4:
            shape = (1, dims[2], dims[3], dims[1])
        elif len(dims) == 2:
            shape = (1, dims[1])
        else:
            raise UnsupportedModel(f"Cannot compile {self.source}: input {self.input!r} has shape {dims}; "
                                   "the runtime takes an image (N, C, H, W) or a vector (N, K).")
        if min(shape) < 1:
            raise UnsupportedModel(f"Cannot compile {self.source}: input {self.input!r} has unknown sizes {dims}.")
        self.tensors[self.input] = Tensor(self.input, shape)
        for node in self.graph.node:
            for name in node.input:
                if name:
                    self.uses[name] = self.uses.get(name, 0) + 1
        for out in self.graph.output:
            self.uses[out.name] = self.uses.get(out.name, 0) + 1
        for node in self.graph.node:
            self.node(node)
        output = self.ir(self.graph.output[0].name)
        if output not in self.tensors:
            raise UnsupportedModel(f"Cannot compile {self.source}: its output is a constant.")
        if not self.ops:
            raise UnsupportedModel(f"Cannot compile {self.source}: it has no operators.")
        self.tensors = {n: t for n, t in self.tensors.items()
                        if n == self.input or any(op.output == n for op in self.ops)}
        return Graph(input=self.input, output=output, tensors=self.tensors, ops=self.ops, source=self.source)

    def node(self, node) -> None:
        kind = node.op_type
        if node.domain not in ("", "ai.onnx"):
            raise self.fail(node, f"is from the custom domain {node.domain!r}; the runtime has no such op")
        ins = [n for n in node.input]
        if kind == "Constant":
            self.consts[node.output[0]] = self.constant_value(node)
            return
        if ins and all((not n) or n in self.consts for n in ins) and kind not in ("Dropout",):
            self.fold(node)
            return
        handler = getattr(self, f"op_{kind}", None)
        if handler is None:
            raise self.fail(node, f"is not supported; the int8 runtime runs {', '.join(SUPPORTED)}")
        handler(node)

    def constant_value(self, node) -> np.ndarray:
        import onnx

        for a in node.attribute:
            if a.name == "value":
                return onnx.numpy_helper.to_array(a.t)
            if a.name in ("value_float", "value_int"):
                return np.array(onnx.helper.get_attribute_value(a))
            if a.name in ("value_floats", "value_ints"):
                return np.array(onnx.helper.get_attribute_value(a))
        raise self.fail(node, "holds a kind of constant the reader does not take")

    def fold(self, node) -> None:
        """Evaluate a node whose inputs are all constants."""
        import onnx
        from onnx.reference import ReferenceEvaluator

        feeds = {n: self.consts[n] for n in node.input if n}
        graph = onnx.helper.make_graph(
            [node], "fold",
            [onnx.helper.make_tensor_value_info(n, onnx.helper.np_dtype_to_tensor_dtype(v.dtype), v.shape)
             for n, v in feeds.items()],
            [onnx.helper.make_tensor_value_info(o, onnx.TensorProto.UNDEFINED, None) for o in node.output if o],
        )
        model = onnx.helper.make_model(graph, opset_imports=list(self.model.opset_import))
        try:
            outs = ReferenceEvaluator(model).run(None, feeds)
        except Exception as exc:  # noqa: BLE001 - any evaluator failure is the same user-facing message
            raise self.fail(node, f"has constant inputs that could not be folded ({exc})") from None
        for name, value in zip([o for o in node.output if o], outs):
            self.consts[name] = np.asarray(value)

    # ---- operators ------------------------------------------------------------------------

    def op_Identity(self, node) -> None:
        self.alias[node.output[0]] = self.ir(node.input[0])

    def op_Dropout(self, node) -> None:
        if node.input[0] in self.consts:
            self.consts[node.output[0]] = self.consts[node.input[0]]
        else:
            self.alias[node.output[0]] = self.ir(node.input[0])

    def image(self, node, name: str) -> tuple[int, int, int]:
        shape = self.shape(name)
        if len(shape) != 4:
            raise self.fail(node, f"expects an image tensor but {name!r} has shape {list(shape)}")
        return shape[1], shape[2], shape[3]

    def window(self, node, h: int, w: int, kernel: tuple[int, int]):
        strides = tuple(self.attr(node, "strides", [1, 1]))
        if any(d != 1 for d in self.attr(node, "dilations", [1, 1])):
            raise self.fail(node, "uses dilation, which the runtime does not implement")
        if self.attr(node, "ceil_mode", 0):
            raise self.fail(node, "uses ceil_mode=1; re-export with ceil_mode=0")
        auto = self.attr(node, "auto_pad", b"NOTSET")
        auto = auto.decode() if isinstance(auto, bytes) else auto
        if auto in ("SAME_UPPER", "SAME_LOWER"):
            pads = []
            for size, k, s in ((h, kernel[0], strides[0]), (w, kernel[1], strides[1])):
                out = -(-size // s)
                total = max((out - 1) * s + k - size, 0)
                small, big = total // 2, total - total // 2
                pads.append((small, big) if auto == "SAME_UPPER" else (big, small))
            top, bottom = pads[0]
            left, right = pads[1]
        elif auto == "VALID":
            top = left = bottom = right = 0
        else:
            top, left, bottom, right = self.attr(node, "pads", [0, 0, 0, 0])
        oh = conv_out(h, kernel[0], strides[0], top, bottom)
        ow = conv_out(w, kernel[1], strides[1], left, right)
        if oh < 1 or ow < 1:
            raise self.fail(node, f"has a {kernel[0]}x{kernel[1]} window larger than its {h}x{w} input")
        return (int(strides[0]), int(strides[1])), (int(top), int(left), int(bottom), int(right)), (oh, ow)

    def op_Conv(self, node) -> None:
        w = self.const(node.input[1])
        if w is None:
            raise self.fail(node, "has weights computed at run time; the runtime needs constant weights")
        if w.ndim != 4:
            raise self.fail(node, f"is a {w.ndim - 2}-D convolution; the runtime runs 2-D convolutions")
        h, wd, c = self.image(node, node.input[0])
        bias = self.const(node.input[2]) if len(node.input) > 2 and node.input[2] else np.zeros(w.shape[0])
        if bias is None:
            raise self.fail(node, "has a bias computed at run time")
        group = int(self.attr(node, "group", 1))
        kernel = (int(w.shape[2]), int(w.shape[3]))
        stride, pads, (oh, ow) = self.window(node, h, wd, kernel)
        o = int(w.shape[0])
        if group == 1:
            kind, weight, mult = "conv", w.transpose(0, 2, 3, 1), 1  # OIHW -> OHWI
        elif group == c and w.shape[1] == 1:
            kind, weight, mult = "dwconv", w.transpose(1, 2, 3, 0), o // c  # (O,1,kh,kw) -> (1,kh,kw,O)
        else:
            raise self.fail(node, f"is a grouped convolution (groups={group}); the runtime runs standard "
                                  "and depthwise convolutions")
        op = Op(kind, node.name, [self.ir(node.input[0])], node.output[0], kernel=kernel, stride=stride, pads=pads,
                depth_multiplier=mult, weight=np.ascontiguousarray(weight, np.float32),
                bias=np.asarray(bias, np.float32).copy())
        self.add_op(op, (1, oh, ow, o))

    def op_BatchNormalization(self, node) -> None:
        scale, shift, mean, var = (self.const(n) for n in node.input[1:5])
        if any(v is None for v in (scale, shift, mean, var)):
            raise self.fail(node, "has statistics computed at run time; export the model in eval mode")
        eps = float(self.attr(node, "epsilon", 1e-5))
        a = (scale / np.sqrt(var + eps)).astype(np.float32)
        b = (shift - mean * a).astype(np.float32)
        prev = self.single_use_producer(node.input[0])
        if prev is not None and prev.is_weighted and prev.act == "none":
            # y = a * (W x + bias) + b: scale each output channel's weights
            axis = 3 if prev.kind == "dwconv" else 0
            shape = [1] * prev.weight.ndim
            shape[axis] = -1
            prev.weight = (prev.weight * a.reshape(shape)).astype(np.float32)
            prev.bias = (prev.bias * a + b).astype(np.float32)
            self.alias[node.output[0]] = prev.output
            return
        h, w, c = self.image(node, node.input[0])
        op = Op("dwconv", node.name, [self.ir(node.input[0])], node.output[0], kernel=(1, 1),
                weight=a.reshape(1, 1, 1, c).astype(np.float32), bias=b)
        self.add_op(op, (1, h, w, c))

    def fuse(self, node, act: str) -> None:
        prev = self.single_use_producer(node.input[0])
        if prev is None or prev.kind not in ("conv", "dwconv", "fc", "add") or prev.act != "none":
            raise self.fail(node, f"follows a {prev.kind if prev else 'shared tensor'}; the runtime fuses "
                                  f"{act} only into the convolution, linear or add layer it follows")
        prev.act = act
        self.alias[node.output[0]] = prev.output

    def op_Relu(self, node) -> None:
        self.fuse(node, "relu")

    def op_Clip(self, node) -> None:
        lo = self.const(node.input[1]) if len(node.input) > 1 and node.input[1] else self.attr(node, "min", None)
        hi = self.const(node.input[2]) if len(node.input) > 2 and node.input[2] else self.attr(node, "max", None)
        lo = None if lo is None else float(np.asarray(lo))
        hi = None if hi is None else float(np.asarray(hi))
        if lo == 0.0 and hi == 6.0:
            self.fuse(node, "relu6")
        elif lo == 0.0 and (hi is None or np.isinf(hi)):
            self.fuse(node, "relu")
        else:
            raise self.fail(node, f"clips to [{lo}, {hi}]; the runtime fuses only ReLU [0, inf) and ReLU6 [0, 6]")

    def op_Add(self, node) -> None:
        a, b = node.input
        const = self.const(b) if a not in self.consts else self.const(a)
        if const is not None:
            x = b if a in self.consts else a
            prev = self.single_use_producer(x)
            channels = None if prev is None or not prev.is_weighted else len(prev.bias)
            if prev is None or prev.act != "none" or channels is None or const.size not in (1, channels):
                raise self.fail(node, "adds a constant that is not a per-channel bias of the layer before it")
            prev.bias = (prev.bias + np.broadcast_to(const.reshape(-1), (channels,))).astype(np.float32)
            self.alias[node.output[0]] = prev.output
            return
        sa, sb = self.shape(a), self.shape(b)
        if sa != sb:
            raise self.fail(node, f"broadcasts {list(sa)} with {list(sb)}; the runtime adds equal shapes only")
        self.add_op(Op("add", node.name, [self.ir(a), self.ir(b)], node.output[0]), sa)

    def linear(self, node, weight: np.ndarray, bias: np.ndarray) -> None:
        x = self.ir(node.input[0])
        shape = self.shape(node.input[0])
        if len(shape) != 2:
            raise self.fail(node, f"multiplies a tensor of shape {list(shape)}; flatten it to (N, K) first")
        if weight.shape[1] != shape[1]:
            raise self.fail(node, f"has weights for {weight.shape[1]} inputs but receives {shape[1]}")
        if x in self.flat_from:
            # the source flattened NCHW (c, h, w order); our tensor is flattened NHWC (h, w, c)
            h, w, c = self.flat_from[x]
            order = np.arange(c * h * w).reshape(c, h, w).transpose(1, 2, 0).reshape(-1)
            weight = weight[:, order]
        op = Op("fc", node.name, [x], node.output[0], weight=np.ascontiguousarray(weight, np.float32),
                bias=np.asarray(bias, np.float32).copy())
        self.add_op(op, (1, weight.shape[0]))

    def op_Gemm(self, node) -> None:
        w = self.const(node.input[1])
        if w is None or node.input[0] in self.consts:
            raise self.fail(node, "multiplies by a matrix computed at run time; the runtime needs constant weights")
        if self.attr(node, "transA", 0):
            raise self.fail(node, "transposes its input (transA=1)")
        alpha, beta = float(self.attr(node, "alpha", 1.0)), float(self.attr(node, "beta", 1.0))
        w = w if self.attr(node, "transB", 0) else w.T
        bias = self.const(node.input[2]) if len(node.input) > 2 and node.input[2] else np.zeros(w.shape[0])
        if bias is None:
            raise self.fail(node, "has a bias computed at run time")
        bias = np.broadcast_to(np.asarray(bias, np.float32).reshape(-1), (w.shape[0],))
        self.linear(node, alpha * w, beta * bias)

    def op_MatMul(self, node) -> None:
        w = self.const(node.input[1])
        if w is None or w.ndim != 2:
            raise self.fail(node, "multiplies by a matrix computed at run time; the runtime needs constant weights")
        self.linear(node, w.T, np.zeros(w.shape[1], np.float32))

    def flatten(self, node) -> None:
        x = self.ir(node.input[0])
        shape = self.shape(node.input[0])
        k = int(np.prod(shape[1:]))
        out = node.output[0]
        if len(shape) == 2:
            self.alias[out] = x
            return
        self.add_op(Op("reshape", node.name, [x], out), (1, k))
        if shape[1] * shape[2] > 1:
            self.flat_from[out] = (shape[1], shape[2], shape[3])

    def op_Flatten(self, node) -> None:
        if int(self.attr(node, "axis", 1)) != 1:
            raise self.fail(node, "flattens from an axis other than 1")
        self.flatten(node)

    def op_Reshape(self, node) -> None:
        target = self.const(node.input[1])
        shape = self.shape(node.input[0])
        if target is None:
            raise self.fail(node, "reshapes to a shape computed at run time")
        target = [int(t) for t in target.reshape(-1)]
        k = int(np.prod(shape[1:]))
        if len(target) == 2 and target[1] in (-1, k) and target[0] in (-1, 0, 1):
            self.flatten(node)
            return
        raise self.fail(node, f"reshapes {list(shape)} to {target}; the runtime reshapes only to (N, K)")

    def pool(self, node, kind: str, kernel: tuple[int, int]) -> None:
        h, w, c = self.image(node, node.input[0])
        stride, pads, (oh, ow) = self.window(node, h, w, kernel)
        if kind == "avgpool" and any(pads) and self.attr(node, "count_include_pad", 0):
            raise self.fail(node, "averages padding in (count_include_pad=1); TFLite excludes padding, "
                                  "re-export with count_include_pad=False")
        same = (same_pads(h, kernel[0], stride[0])[1:], same_pads(w, kernel[1], stride[1])[1:])
        if any(pads) and (pads[0], pads[2]) != same[0] or any(pads) and (pads[1], pads[3]) != same[1]:
            raise self.fail(node, f"pads {list(pads)}, which is neither VALID nor TFLite's SAME padding; "
                                  "TFLite pools take only those two")
        op = Op(kind, node.name, [self.ir(node.input[0])], node.output[0], kernel=kernel, stride=stride, pads=pads)
        self.add_op(op, (1, oh, ow, c))

    def op_AveragePool(self, node) -> None:
        self.pool(node, "avgpool", tuple(int(k) for k in self.attr(node, "kernel_shape")))

    def op_MaxPool(self, node) -> None:
        if len(node.output) > 1 and node.output[1]:
            raise self.fail(node, "returns indices, which the runtime does not compute")
        self.pool(node, "maxpool", tuple(int(k) for k in self.attr(node, "kernel_shape")))

    def op_GlobalAveragePool(self, node) -> None:
        h, w, c = self.image(node, node.input[0])
        op = Op("avgpool", node.name, [self.ir(node.input[0])], node.output[0], kernel=(h, w))
        self.add_op(op, (1, 1, 1, c))

    def op_ReduceMean(self, node) -> None:
        axes = self.const(node.input[1]) if len(node.input) > 1 and node.input[1] else self.attr(node, "axes")
        shape = self.shape(node.input[0])
        axes = sorted(int(a) % 4 for a in np.asarray(axes).reshape(-1)) if axes is not None else []
        if len(shape) != 4 or axes != [2, 3]:
            raise self.fail(node, "averages over axes other than the spatial ones (2, 3)")
        h, w, c = self.image(node, node.input[0])
        op = Op("avgpool", node.name, [self.ir(node.input[0])], node.output[0], kernel=(h, w))
        self.add_op(op, (1, 1, 1, c))
        if not self.attr(node, "keepdims", 1):
            self.tensors[op.output] = Tensor(op.output, (1, c))

    def op_Concat(self, node) -> None:
        names = [n for n in node.input]
        if any(n in self.consts for n in names):
            raise self.fail(node, "concatenates a constant")
        shapes = [self.shape(n) for n in names]
        rank = len(shapes[0])
        axis = int(self.attr(node, "axis")) % rank
        axis = NCHW_TO_NHWC_AXIS[axis] if rank == 4 else axis
        if axis == 0:
            raise self.fail(node, "concatenates along the batch axis")
        for s in shapes[1:]:
            if len(s) != rank or any(a != b for i, (a, b) in enumerate(zip(s, shapes[0])) if i != axis):
                raise self.fail(node, f"concatenates mismatched shapes {[list(x) for x in shapes]}")
        out = list(shapes[0])
        out[axis] = sum(s[axis] for s in shapes)
        self.add_op(Op("concat", node.name, [self.ir(n) for n in names], node.output[0], axis=axis), tuple(out))

    def op_Softmax(self, node) -> None:
        shape = self.shape(node.input[0])
        if len(shape) != 2 or int(self.attr(node, "axis", -1)) not in (-1, 1):
            raise self.fail(node, "is a softmax over something other than the last axis of an (N, K) tensor")
        self.add_op(Op("softmax", node.name, [self.ir(node.input[0])], node.output[0]), shape)
