"""The quantized IR as an int8 ``.tflite`` flatbuffer, for TFLite Micro and LiteRT.

Written with the schema's object API from the ``tflite-micro`` package. Fully connected
layers are written as 1x1 CONV_2D on a (1, 1, 1, K) view: LiteRT's FULLY_CONNECTED kernel
rounds its requantization once where TFLite Micro rounds twice, while both runtimes'
convolution kernels round like ours, so this keeps the .tflite bit-exact in both. Convolutions
whose padding is neither VALID nor TFLite's SAME (PyTorch pads stride-2 layers on both
sides; SAME puts the odd pixel after) get an explicit PAD op filled with the input's zero
point, which is exactly what TFLite's skipped taps contribute.
"""

from __future__ import annotations

import numpy as np

from compilers.ir import Graph, Op, same_pads

# op versions for int8 with per-channel weights, as the TFLite converter writes them
_VERSIONS = {"CONV_2D": 3, "DEPTHWISE_CONV_2D": 3, "FULLY_CONNECTED": 4, "ADD": 2, "AVERAGE_POOL_2D": 2,
             "MAX_POOL_2D": 2, "RESHAPE": 1, "CONCATENATION": 2, "SOFTMAX": 2, "PAD": 2}


def _schema():
    from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as S

    return S


class _Builder:
    def __init__(self, graph: Graph):
        self.S = _schema()
        self.graph = graph
        self.tensors: list = []
        self.index: dict[str, int] = {}
        self.buffers = [self.S.BufferT()]  # buffer 0: the empty buffer of every activation
        self.codes: list[str] = []
        self.operators: list = []
        self.flat_views: dict[int, int] = {}  # tensor index -> its (1, 1, 1, K) form

    def skippable_reshape(self, op: Op) -> bool:
        shape = self.graph.shape(op.inputs[0])
        users = self.graph.consumers(op.output)
        return (len(shape) == 4 and shape[1] == shape[2] == 1 and op.output != self.graph.output
                and bool(users) and all(u.kind == "fc" for u in users))

    def quant(self, scales, zero_points, axis: int = 0):
        q = self.S.QuantizationParametersT()
        q.scale = [float(s) for s in np.atleast_1d(scales)]
        q.zeroPoint = [int(z) for z in np.atleast_1d(zero_points)]
        q.quantizedDimension = axis
        return q

    def tensor(self, name: str, shape, dtype, quant=None, data: np.ndarray | None = None) -> int:
        t = self.S.TensorT()
        t.name = name
        t.shape = [int(s) for s in shape]
        t.type = dtype
        t.quantization = quant
        if data is None:
            t.buffer = 0
        else:
            buf = self.S.BufferT()
            buf.data = np.frombuffer(np.ascontiguousarray(data).tobytes(), np.uint8).copy()
            self.buffers.append(buf)
            t.buffer = len(self.buffers) - 1
        self.tensors.append(t)
        return len(self.tensors) - 1

    def activation(self, name: str) -> int:
        if name not in self.index:
            t = self.graph.tensors[name]
            self.index[name] = self.tensor(name, t.shape, self.S.TensorType.INT8,
                                           self.quant(t.quant.scale, t.quant.zero_point))
        return self.index[name]

    def operator(self, code: str, inputs: list[int], outputs: list[int], options_type=None, options=None) -> None:
        if code not in self.codes:
            self.codes.append(code)
        op = self.S.OperatorT()
        op.opcodeIndex = self.codes.index(code)
        op.inputs = inputs
        op.outputs = outputs
        if options is not None:
            op.builtinOptionsType = options_type
            op.builtinOptions = options
        self.operators.append(op)

    def act(self, op: Op) -> int:
        A = self.S.ActivationFunctionType
        return {"none": A.NONE, "relu": A.RELU, "relu6": A.RELU6}[op.act]

    def padding(self, op: Op, x: int, name: str) -> tuple[int, int]:
        """(tflite padding enum, input tensor index), inserting a PAD op when needed."""
        P = self.S.Padding
        if not any(op.pads):
            return P.VALID, x
        _, h, w, c = self.graph.shape(op.inputs[0])
        (_, t, b), (_, l, r) = same_pads(h, op.kernel[0], op.stride[0]), same_pads(w, op.kernel[1], op.stride[1])
        if op.pads == (t, l, b, r):
            return P.SAME, x
        top, left, bottom, right = op.pads
        paddings = np.array([[0, 0], [top, bottom], [left, right], [0, 0]], np.int32)
        pad_shape = self.tensor(f"{name}/paddings", (4, 2), self.S.TensorType.INT32, data=paddings)
        q = self.graph.tensors[op.inputs[0]].quant
        padded = self.tensor(f"{name}/padded", (1, h + top + bottom, w + left + right, c), self.S.TensorType.INT8,
                             self.quant(q.scale, q.zero_point))
        options = self.S.PadOptionsT()
        self.operator("PAD", [x, pad_shape], [padded], self.S.BuiltinOptions.PadOptions, options)
        return P.VALID, padded

    def weighted(self, op: Op) -> None:
        S = self.S
        x = self.activation(op.inputs[0])
        in_scale = np.float32(self.graph.tensors[op.inputs[0]].quant.scale)
        axis = 3 if op.kind == "dwconv" else 0
        channels = op.qweight.shape[axis]
        qweight = op.qweight.reshape(channels, 1, 1, -1) if op.kind == "fc" else op.qweight
        w = self.tensor(f"{op.output}/weights", qweight.shape, S.TensorType.INT8,
                        self.quant(op.weight_scale, np.zeros(channels, int), axis), qweight)
        b = self.tensor(f"{op.output}/bias", (channels,), S.TensorType.INT32,
                        self.quant(op.weight_scale.astype(np.float32) * in_scale, np.zeros(channels, int)),
                        op.qbias.astype("<i4"))
        if op.kind == "fc":
            self.fc_as_conv(op, x, w, b)
            return
        padding, x = self.padding(op, x, op.output)
        options = S.Conv2DOptionsT() if op.kind == "conv" else S.DepthwiseConv2DOptionsT()
        options.padding = padding
        options.strideH, options.strideW = op.stride
        options.dilationHFactor = options.dilationWFactor = 1
        options.fusedActivationFunction = self.act(op)
        if op.kind == "conv":
            self.operator("CONV_2D", [x, w, b], [self.activation(op.output)], S.BuiltinOptions.Conv2DOptions, options)
        else:
            options.depthMultiplier = op.depth_multiplier
            self.operator("DEPTHWISE_CONV_2D", [x, w, b], [self.activation(op.output)],
                          S.BuiltinOptions.DepthwiseConv2DOptions, options)

    def view(self, source: int, shape, name: str) -> int:
        """A RESHAPE of tensor ``source`` to ``shape`` (same quantization)."""
        S = self.S
        src = self.tensors[source]
        out = self.tensor(name, shape, S.TensorType.INT8, self.quant(src.quantization.scale, src.quantization.zeroPoint))
        new_shape = np.array(shape, np.int32)
        target = self.tensor(f"{name}/shape", new_shape.shape, S.TensorType.INT32, data=new_shape)
        options = S.ReshapeOptionsT()
        options.newShape = [int(v) for v in new_shape]
        self.operator("RESHAPE", [source, target], [out], S.BuiltinOptions.ReshapeOptions, options)
        return out

    def fc_as_conv(self, op: Op, x: int, w: int, b: int) -> None:
        S = self.S
        k, n = op.qweight.shape[1], op.qweight.shape[0]
        if x in self.flat_views:  # the flattened (1, 1, 1, K) tensor itself: no reshape needed
            x4 = self.flat_views[x]
        else:
            x4 = self.view(x, (1, 1, 1, k), f"{op.output}/input4d")
        options = S.Conv2DOptionsT()
        options.padding = S.Padding.VALID
        options.strideH = options.strideW = 1
        options.dilationHFactor = options.dilationWFactor = 1
        options.fusedActivationFunction = self.act(op)
        q = self.graph.tensors[op.output].quant
        y4 = self.tensor(f"{op.output}/output4d", (1, 1, 1, n), S.TensorType.INT8, self.quant(q.scale, q.zero_point))
        self.operator("CONV_2D", [x4, w, b], [y4], S.BuiltinOptions.Conv2DOptions, options)
        out = self.activation(op.output)
        new_shape = np.array(self.graph.shape(op.output), np.int32)
        target = self.tensor(f"{op.output}/shape", new_shape.shape, S.TensorType.INT32, data=new_shape)
        reshape = S.ReshapeOptionsT()
        reshape.newShape = [int(v) for v in new_shape]
        self.operator("RESHAPE", [y4, target], [out], S.BuiltinOptions.ReshapeOptions, reshape)

    def op(self, op: Op) -> None:
        S = self.S
        if op.kind == "reshape" and self.skippable_reshape(op):
            # a flatten of (1, 1, 1, K) read only by fully connected layers: they read the 4-D tensor
            self.index[op.output] = self.activation(op.inputs[0])
            self.flat_views[self.index[op.output]] = self.index[op.output]
            return
        if op.is_weighted:
            self.weighted(op)
            return
        out = self.activation(op.output)
        ins = [self.activation(n) for n in op.inputs]
        if op.kind == "add":
            options = S.AddOptionsT()
            options.fusedActivationFunction = self.act(op)
            self.operator("ADD", ins, [out], S.BuiltinOptions.AddOptions, options)
        elif op.kind in ("avgpool", "maxpool"):
            options = S.Pool2DOptionsT()
            options.padding = S.Padding.SAME if any(op.pads) else S.Padding.VALID
            options.strideH, options.strideW = op.stride
            options.filterHeight, options.filterWidth = op.kernel
            options.fusedActivationFunction = self.act(op)
            code = "AVERAGE_POOL_2D" if op.kind == "avgpool" else "MAX_POOL_2D"
            self.operator(code, ins, [out], S.BuiltinOptions.Pool2DOptions, options)
        elif op.kind == "reshape":
            new_shape = np.array(self.graph.shape(op.output), np.int32)
            shape = self.tensor(f"{op.output}/shape", new_shape.shape, S.TensorType.INT32, data=new_shape)
            options = S.ReshapeOptionsT()
            options.newShape = [int(v) for v in new_shape]
            self.operator("RESHAPE", ins + [shape], [out], S.BuiltinOptions.ReshapeOptions, options)
        elif op.kind == "concat":
            options = S.ConcatenationOptionsT()
            options.axis = op.axis
            options.fusedActivationFunction = self.act(op)
            self.operator("CONCATENATION", ins, [out], S.BuiltinOptions.ConcatenationOptions, options)
        elif op.kind == "softmax":
            options = S.SoftmaxOptionsT()
            options.beta = 1.0
            self.operator("SOFTMAX", ins, [out], S.BuiltinOptions.SoftmaxOptions, options)
        else:  # pragma: no cover
            raise ValueError(op.kind)

    def build(self) -> bytes:
        import flatbuffers

        S = self.S
        graph_in = self.activation(self.graph.input)
        for op in self.graph.ops:
            self.op(op)
        codes = []
        for name in self.codes:
            code = S.OperatorCodeT()
            value = getattr(S.BuiltinOperator, name)
            code.builtinCode = value
            code.deprecatedBuiltinCode = min(value, 127)
            code.version = _VERSIONS[name]
            codes.append(code)
        subgraph = S.SubGraphT()
        subgraph.tensors = self.tensors
        subgraph.inputs = [graph_in]
        subgraph.outputs = [self.index[self.graph.output]]
        subgraph.operators = self.operators
        subgraph.name = "main"
        model = S.ModelT()
        model.version = 3
        model.description = "nanofactory int8"
        model.operatorCodes = codes
        model.subgraphs = [subgraph]
        model.buffers = self.buffers
        builder = flatbuffers.Builder(1024)
        builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
        return bytes(builder.Output())


def write_tflite(graph: Graph) -> bytes:
    """The .tflite bytes of a quantized graph."""
    if not graph.quantized:
        raise ValueError("quantize the graph first (compilers.int8.quantize_graph)")
    return _Builder(graph).build()
