"""The int8 compiler (compilers/) on tiny seeded models.

* the ONNX reader: its float IR against onnxruntime, and the fusions it promises;
* refusals: one NanofactoryError sentence naming the node and op type, nothing written;
* TFLite's int8 conventions (per-channel symmetric weights, multipliers, activation ranges, shared quant);
* int8 against float, and the .tflite flatbuffer's operators.

Bit-exactness across runtimes is in test_compiler_runtimes.py, the memory plan in
test_compiler_planner.py. The models come from tests/onnx_models.py (the zoo: tests/compiler_zoo.py): two exported from torch (BatchNorm folded on export), the rest
written node by node. All inputs are seeded standard normals; calibration and test inputs differ.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx_models as M
import pytest
from compiler_zoo import MODELS, initializers, onnxruntime_outputs

from compilers.build import compile_onnx, nchw_to_nhwc
from compilers.fixedpoint import activation_range, quantize_multiplier
from compilers.onnx_reader import read_onnx
from compilers.reference import run_float, run_int8
from knowledge.errors import NanofactoryError

# ---- the reader: float IR against onnxruntime -------------------------------------------------

KINDS = {
    "student": ["conv"] + ["dwconv", "conv"] * 5 + ["avgpool", "reshape", "fc"],  # no BatchNorm left
    "residual": ["conv", "conv", "conv", "add", "conv", "add", "avgpool", "reshape", "fc"],
    "pools": ["conv", "maxpool", "avgpool", "concat", "reshape", "fc"],
    "softmax_head": ["conv", "avgpool", "reshape", "fc", "fc", "softmax"],
    "bn_depth_mult": ["conv", "dwconv", "dwconv", "avgpool", "reshape", "fc"],
    "pad": ["conv", "dwconv", "conv", "avgpool", "reshape", "fc"],
    "simd_shapes": ["conv", "dwconv", "conv", "dwconv", "add", "conv", "avgpool", "reshape", "fc"],
    "dsp_shapes": ["conv", "conv", "dwconv", "conv", "conv", "conv", "avgpool", "reshape", "fc"],
}


@pytest.mark.parametrize("name", MODELS)
def test_float_ir_matches_onnxruntime(zoo, name):
    graph = read_onnx(zoo.path(name))
    assert [op.kind for op in graph.ops] == KINDS[name]
    x = zoo.inputs(name, 8, seed=3)
    expected = onnxruntime_outputs(zoo.path(name), x)
    ours = run_float(graph, nchw_to_nhwc(x))
    assert ours.shape == expected.shape
    assert np.ptp(expected, axis=0).max() > 0.05  # the outputs depend on the input
    np.testing.assert_allclose(ours, expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())


def test_reader_fuses_activations_and_bias(zoo):
    student = read_onnx(zoo.path("student"))
    assert all(op.act == "relu" for op in student.ops if op.kind in ("conv", "dwconv"))
    residual = read_onnx(zoo.path("residual"))
    adds = [op for op in residual.ops if op.kind == "add"]
    assert [op.act for op in adds] == ["relu", "relu"]  # ReLU after each Add, fused
    shortcut = residual.ops[2]
    assert shortcut.kernel == (1, 1) and shortcut.stride == (2, 2) and shortcut.inputs == [residual.input]

    head = read_onnx(zoo.path("softmax_head"))
    assert head.ops[0].act == "relu6"  # Clip(0, 6)
    matmul = head.ops[3]  # MatMul + Add + Relu: one fully connected layer
    consts = initializers(zoo.path("softmax_head"))
    assert matmul.act == "relu"
    np.testing.assert_array_equal(matmul.weight, consts["mm.w"].T)
    np.testing.assert_array_equal(matmul.bias, consts["mm.b"])


def test_reader_standalone_batchnorm_and_depth_multiplier(zoo):
    graph = read_onnx(zoo.path("bn_depth_mult"))
    consts = initializers(zoo.path("bn_depth_mult"))
    bn, dw = graph.ops[1], graph.ops[2]
    scale = consts["bn.scale"] / np.sqrt(consts["bn.var"] + 1e-3)
    assert bn.kind == "dwconv" and bn.kernel == (1, 1) and bn.depth_multiplier == 1
    np.testing.assert_allclose(bn.weight.reshape(-1), scale, rtol=1e-6)
    np.testing.assert_allclose(bn.bias, consts["bn.shift"] - consts["bn.mean"] * scale, rtol=1e-6, atol=1e-7)
    assert dw.depth_multiplier == 2 and dw.weight.shape == (1, 3, 3, 8)
    assert graph.shape(dw.output) == (1, 7, 7, 8)


def test_reader_flatten_of_a_spatial_map(zoo):
    """The Gemm after Flatten reads (c, h, w) columns, our tensor is (h, w, c): only a map with H*W > 1
    tells the two apart, and the float comparison above would catch a missing permutation."""
    graph = read_onnx(zoo.path("pools"))
    reshape, fc = graph.ops[-2], graph.ops[-1]
    _, h, w, c = graph.shape(reshape.inputs[0])
    assert h * w > 1 and fc.weight.shape == (5, h * w * c)
    gemm = initializers(zoo.path("pools"))["fc.w"]
    assert not np.array_equal(fc.weight, gemm)
    np.testing.assert_array_equal(np.sort(fc.weight, axis=1), np.sort(gemm, axis=1))  # same columns, reordered


# ---- refusals ------------------------------------------------------------------------------------

ERRORS = {
    "sigmoid": (lambda rng: M.with_unsupported(rng, "Sigmoid"), ["'gate'", "(Sigmoid)", "not supported"]),
    "hardswish": (lambda rng: M.with_unsupported(rng, "HardSwish"), ["'gate'", "(HardSwish)", "not supported"]),
    "grouped_conv": (M.grouped_conv, ["'gconv'", "(Conv)", "groups=2"]),
    "dilation": (M.dilated_conv, ["'dilated'", "(Conv)", "dilation"]),
    "clip_min_-1": (M.clip_negative, ["'clip_neg'", "(Clip)", "-1.0"]),
    "opset_11": (M.old_opset, ["opset 11", "13"]),
    "already_quantized": (M.already_quantized, ["already quantized", "3 DequantizeLinear/QuantizeLinear nodes",
                                                "float model", "model.onnx, not model_int8.onnx"]),
}


def assert_refused(path: Path, out: Path, expected: list[str]) -> str:
    calibration = np.random.default_rng(0).standard_normal((4, 2, 5, 5)).astype(np.float32)
    with pytest.raises(NanofactoryError) as info:
        compile_onnx(path, calibration, out)
    message = str(info.value)
    for part in expected + [path.name]:
        assert part in message, f"{part!r} not in {message!r}"
    assert "\n" not in message and message.endswith(".")
    assert not out.exists() or not any(out.iterdir())
    return message


@pytest.mark.parametrize("case", ERRORS)
def test_unsupported_model_is_refused(tmp_path, case):
    build, expected = ERRORS[case]
    path = M.save(build(np.random.default_rng(5)), tmp_path / f"{case}.onnx")
    assert_refused(path, tmp_path / "out", expected)


def test_garbage_file_is_refused(tmp_path):
    path = tmp_path / "garbage.onnx"
    path.write_bytes(np.random.default_rng(6).bytes(2048))
    assert_refused(path, tmp_path / "out", ["not a valid ONNX model"])


def test_missing_file_is_refused(tmp_path):
    assert_refused(tmp_path / "nowhere.onnx", tmp_path / "out", ["No ONNX model"])


def test_calibration_of_the_wrong_shape_is_refused(tmp_path):
    path = M.save(M.strided_padding(np.random.default_rng(5)), tmp_path / "model.onnx")
    c, h, w = M.input_shape(path)
    for shape in [(4, h * w * c), (4, h, w, c)]:  # flattened; channels last
        with pytest.raises(NanofactoryError, match=rf"shape \({shape[0]}, .*takes \(N, {c}, {h}, {w}\)"):
            compile_onnx(path, np.zeros(shape, np.float32), tmp_path / "out")
    assert not (tmp_path / "out").exists()


# ---- int8 conventions -----------------------------------------------------------------------


@pytest.mark.parametrize(("real", "expected"), [
    (0.5, (1 << 30, 0)),
    (0.25, (1 << 30, -1)),
    (1.0, (1 << 30, 1)),
    (0.75, (3 << 29, 0)),
    (1 - 2**-33, (1 << 30, 1)),  # the mantissa rounds up to 2**31: halved, shift + 1
    (0.0, (0, 0)),
    (2.0**-40, (0, 0)),  # below TFLite's smallest shift: zero
])
def test_quantize_multiplier_known_values(real, expected):
    assert quantize_multiplier(real) == expected


def test_quantize_multiplier_is_accurate():
    for real in np.random.default_rng(0).uniform(-6, 1.5, 200):
        real = float(10**real)
        m, shift = quantize_multiplier(real)
        assert (1 << 30) <= m < (1 << 31)
        assert abs(m * 2.0 ** (shift - 31) - real) <= real * 2.0**-31


@pytest.mark.parametrize(("act", "scale", "zero_point", "expected"), [
    ("none", 0.1, 5, (-128, 127)),
    ("relu", 0.1, -128, (-128, 127)),
    ("relu", 0.05, -20, (-20, 127)),
    ("relu6", 0.1, -128, (-128, -68)),  # 6 / 0.1 = 60 steps above the zero point
    ("relu6", 0.07, -10, (-10, 76)),  # 6 / 0.07 = 85.71 -> 86
    ("relu6", 0.01, 0, (0, 127)),  # 6 is beyond the int8 range: saturates
])
def test_activation_range(act, scale, zero_point, expected):
    assert activation_range(act, scale, zero_point) == expected


@pytest.mark.parametrize("name", MODELS)
def test_weights_symmetric(zoo, name):
    """Convolution weights per output channel, fully connected weights per tensor (as the TFLite
    converter writes them: LiteRT's per-channel FC kernel rounds differently from TFLM's)."""
    graph = zoo.compiled(name).graph
    for op in (op for op in graph.ops if op.is_weighted):
        axis = 3 if op.kind == "dwconv" else 0
        channels = op.weight.shape[axis]
        assert op.qweight.dtype == np.int8 and op.qweight.shape == op.weight.shape
        assert np.abs(op.qweight.astype(int)).max() <= 127  # symmetric: -128 never used
        assert op.weight_scale.shape == (channels,)
        scale = op.weight_scale.reshape([-1 if i == axis else 1 for i in range(op.weight.ndim)])
        assert (np.abs(op.qweight * scale - op.weight) <= scale / 2 * (1 + 1e-6)).all()
        reduce = tuple(i for i in range(op.weight.ndim) if i != axis)
        peaks = np.abs(op.qweight.astype(int)).max(axis=reduce)
        assert (peaks[np.abs(op.weight).max(axis=reduce) > 0] == 127).all()  # each channel uses its full range
        assert len(set(op.weight_scale.tolist())) > 1
        bias_scale = op.weight_scale.astype(np.float64) * np.float32(graph.tensors[op.inputs[0]].quant.scale)
        assert op.qbias.dtype == np.int32
        assert (np.abs(op.qbias * bias_scale - op.bias) <= bias_scale / 2 + 1e-9).all()


@pytest.mark.parametrize("name", MODELS)
def test_activations_hold_zero(zoo, name):
    for tensor in zoo.compiled(name).graph.tensors.values():
        q = tensor.quant
        assert q.scale > 0 and -128 <= q.zero_point <= 127
        assert q.dequantize(np.int8(-128)) <= 0 <= q.dequantize(np.int8(127))


def test_pools_reshape_concat_share_quantization(zoo):
    def same(a: str, b: str) -> bool:
        qa, qb = graph.tensors[a].quant, graph.tensors[b].quant
        return (qa.scale, qa.zero_point) == (qb.scale, qb.zero_point)

    checked = 0
    for name in ("pools", "student", "residual"):
        graph = zoo.compiled(name).graph
        for op in graph.ops:
            if op.kind in ("maxpool", "avgpool", "reshape", "concat"):
                assert all(same(n, op.output) for n in op.inputs), f"{name}: {op.kind} {op.name}"
                checked += 1
    assert checked >= 8
    head = zoo.compiled("softmax_head").graph
    out = head.tensors[head.output].quant
    assert (out.scale, out.zero_point) == (float(np.float32(1 / 256)), -128)


# ---- int8 against float -------------------------------------------------------------------------


def test_int8_student_close_to_float(zoo):
    """Fresh inputs (not the calibration set). The bounds leave room over what int8 costs this random
    11-layer student: 98% argmax agreement, median error 2.7 output scales, centered SQNR 17 dB, much
    like simulating the quantization in float (quantized weights, every activation rounded: 3.0 scales)."""
    compiled = zoo.compiled("student")
    float_graph = read_onnx(zoo.path("student"))
    x = zoo.inputs("student", 200, seed=4)
    expected = run_float(float_graph, nchw_to_nhwc(x))
    q_in, q_out = (compiled.graph.tensors[n].quant for n in (compiled.graph.input, compiled.graph.output))
    ours = q_out.dequantize(run_int8(compiled.graph, q_in.quantize(nchw_to_nhwc(x))))
    error = np.abs(ours - expected)
    signal = expected - expected.mean(axis=0)
    assert np.ptp(expected, axis=0).min() > 100 * q_out.scale  # the outputs move far more than the error
    assert np.median(error) <= 4 * q_out.scale, f"median error {np.median(error) / q_out.scale:.1f} scales"
    assert 20 * np.log10(np.linalg.norm(signal) / np.linalg.norm(error)) >= 12
    assert (ours.argmax(1) == expected.argmax(1)).mean() >= 0.9


# ---- the .tflite flatbuffer ---------------------------------------------------------------------

OP_CODES = {
    "student": {"CONV_2D", "DEPTHWISE_CONV_2D", "PAD", "AVERAGE_POOL_2D", "RESHAPE"},
    "residual": {"CONV_2D", "PAD", "ADD", "AVERAGE_POOL_2D", "RESHAPE"},
    "pools": {"CONV_2D", "MAX_POOL_2D", "AVERAGE_POOL_2D", "CONCATENATION", "RESHAPE"},
    "softmax_head": {"CONV_2D", "AVERAGE_POOL_2D", "RESHAPE", "SOFTMAX"},
    "bn_depth_mult": {"CONV_2D", "DEPTHWISE_CONV_2D", "AVERAGE_POOL_2D", "RESHAPE"},
    "pad": {"CONV_2D", "PAD", "DEPTHWISE_CONV_2D", "AVERAGE_POOL_2D", "RESHAPE"},
    "simd_shapes": {"CONV_2D", "DEPTHWISE_CONV_2D", "ADD", "AVERAGE_POOL_2D", "RESHAPE"},
    "dsp_shapes": {"CONV_2D", "DEPTHWISE_CONV_2D", "AVERAGE_POOL_2D", "RESHAPE"},
}
# stride-2 layers padded (1, 1) on an even input (TFLite SAME pads (0, 1)), and pad's asymmetric depthwise
PADS = {"student": 3, "residual": 1, "pools": 0, "softmax_head": 0, "bn_depth_mult": 0, "pad": 2, "simd_shapes": 0,
        "dsp_shapes": 0}


@pytest.mark.parametrize("name", MODELS)
def test_tflite_parses_with_expected_ops(zoo, name):
    S = pytest.importorskip("tflite_micro.tensorflow.lite.micro.python.schema_py_generated")
    compiled = zoo.compiled(name)
    buf = (compiled.dir / "model.tflite").read_bytes()
    assert S.Model.ModelBufferHasIdentifier(buf, 0)
    model = S.ModelT.InitFromObj(S.Model.GetRootAsModel(buf, 0))
    names = {v: k for k, v in vars(S.BuiltinOperator).items() if not k.startswith("_")}
    codes = [names[c.builtinCode] for c in model.operatorCodes]
    graph = model.subgraphs[0]
    used = [codes[op.opcodeIndex] for op in graph.operators]
    assert set(used) == OP_CODES[name]
    assert used.count("PAD") == PADS[name]
    assert "FULLY_CONNECTED" not in used  # linear layers are 1x1 convolutions (see above)
    assert used.count("CONV_2D") == sum(op.kind in ("conv", "fc") for op in compiled.graph.ops)

    def q(index: int):
        t = graph.tensors[index]
        return t, t.quantization

    _, q_in = q(graph.inputs[0])
    ir_in = compiled.graph.tensors[compiled.graph.input].quant
    assert q_in.zeroPoint[0] == ir_in.zero_point and q_in.scale[0] == pytest.approx(ir_in.scale, rel=1e-7)
    for op, code in zip(graph.operators, used):
        if code in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED"):
            w, qw = q(op.inputs[1])
            b, _ = q(op.inputs[2])
            axis = 3 if code == "DEPTHWISE_CONV_2D" else 0
            assert w.type == S.TensorType.INT8 and b.type == S.TensorType.INT32
            assert len(qw.scale) == w.shape[axis]
            assert qw.quantizedDimension == axis and len(qw.zeroPoint) == len(qw.scale) and not any(qw.zeroPoint)
        if code == "PAD":
            _, h, w, _ = graph.tensors[op.inputs[0]].shape
            _, ph, pw, _ = graph.tensors[op.outputs[0]].shape
            assert ph >= h and pw >= w and ph * pw > h * w  # it really pads
    if name == "bn_depth_mult":
        multipliers = [op.builtinOptions.depthMultiplier for op, c in zip(graph.operators, used)
                       if c == "DEPTHWISE_CONV_2D"]
        assert multipliers == [1, 2]
