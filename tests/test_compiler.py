"""The int8 compiler (compilers/) on tiny seeded models.

* the ONNX reader: its float IR against onnxruntime, and the fusions it promises;
* refusals: one NanofactoryError sentence naming the node and op type, nothing written;
* the C library (under ASan/UBSan), TFLite Micro and LiteRT against the numpy int8 reference, bit for bit;
  each path through the C kernels (portable, AVX2, the host's -march=native), and the vector
  requantization against the scalar one on edge values;
* the memory plan: invariants checked independently of the planner, against TFLM's arena, in the C;
* TFLite's int8 conventions (per-channel symmetric weights, multipliers, activation ranges, shared quant);
* int8 against float, and the .tflite flatbuffer's operators.

The models come from tests/onnx_models.py: two exported from torch (BatchNorm folded on export), the rest
written node by node. All inputs are seeded standard normals; calibration and test inputs differ.
"""

from __future__ import annotations

import functools
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import onnx_models as M
import pytest

from compilers.build import compile_onnx, load_compiled, load_summary, nchw_to_nhwc
from compilers.fixedpoint import activation_range, quantize_multiplier
from compilers.ir import Graph, Op, Tensor
from compilers.onnx_reader import read_onnx
from compilers.planner import plan_memory
from compilers.reference import run_float, run_int8
from compilers.verify import (
    HOST_CFLAGS,
    PORTABLE_CFLAGS,
    SANITIZE,
    build_host,
    run_host,
)
from knowledge.errors import NanofactoryError


def simd_shapes(rng):
    """Shapes that reach every block and tail of the C kernels' vector paths (compilers/c/nf_avx2.h):
    3 input channels (a first layer), 24 / 21 / 40 output channels (blocks of 8, a block of 16 and
    one of 8 in depthwise, tails left to the portable loops), depthwise 3x3 and 5x5 (an odd number
    of taps) with borders, window sizes that are not a multiple of 4, output pixel counts that fill
    no whole block, and an Add over 7 * 6 * 21 = 882 elements (not a multiple of 8)."""
    inits: dict = {"fc.w": (rng.standard_normal((5, 40)) * 0.3).astype(np.float32), "fc.b": np.zeros(5, np.float32)}
    nodes = [
        M._conv(rng, inits, "first", "input", "a", 3, 24, 3, pads=[1, 1, 1, 1], strides=[2, 2]),
        M._node("Relu", ["a"], "ar", "relu_a"),
        M._conv(rng, inits, "dw3", "ar", "b", 24, 24, 3, group=24, pads=[1, 1, 1, 1]),
        M._node("Relu", ["b"], "br", "relu_b"),
        M._conv(rng, inits, "pw", "br", "c", 24, 21, 1),
        M._node("Relu", ["c"], "cr", "relu_c"),
        M._conv(rng, inits, "dw5", "cr", "d", 21, 21, 5, group=21, pads=[2, 2, 2, 2]),
        M._node("Add", ["d", "cr"], "e", "add"),
        M._node("Relu", ["e"], "er", "relu_e"),
        M._conv(rng, inits, "wide", "er", "f", 21, 40, 3, pads=[1, 1, 1, 1]),
        M._node("Relu", ["f"], "fr", "relu_f"),
        M._node("GlobalAveragePool", ["fr"], "g", "gap"),
        M._node("Flatten", ["g"], "h", "flatten", axis=1),
        M._node("Gemm", ["h", "fc.w", "fc.b"], "output", "fc", transB=1),
    ]
    return M._model(nodes, inits, (3, 13, 11), (5,))


BUILDERS = {
    "student": lambda path: M.export_student(path, seed=0),
    "residual": lambda path: M.export_residual(path, seed=0),
    "pools": lambda path: M.save(M.pools_concat_flatten(np.random.default_rng(10)), path),
    "softmax_head": lambda path: M.save(M.relu6_matmul_softmax(np.random.default_rng(11)), path),
    "bn_depth_mult": lambda path: M.save(M.batchnorm_depth_multiplier(np.random.default_rng(12)), path),
    "pad": lambda path: M.save(M.strided_padding(np.random.default_rng(13)), path),
    "simd_shapes": lambda path: M.save(simd_shapes(np.random.default_rng(14)), path),
}
MODELS = list(BUILDERS)
CALIBRATION, TEST = 64, 20

needs_gcc = pytest.mark.skipif(shutil.which("gcc") is None, reason="gcc is not installed")
needs_arm = pytest.mark.skipif(shutil.which("arm-none-eabi-gcc") is None, reason="arm-none-eabi-gcc is not installed")


class Zoo:
    """Each model's ONNX file, inputs and compiled folder, built on first use and kept for the module."""

    def __init__(self, root: Path):
        self.root = root
        self._paths: dict[str, Path] = {}
        self._compiled: dict = {}

    def path(self, name: str) -> Path:
        if name not in self._paths:
            self._paths[name] = BUILDERS[name](self.root / f"{name}.onnx")
        return self._paths[name]

    def inputs(self, name: str, n: int, seed: int) -> np.ndarray:
        """Float NCHW inputs; a test set (seed 2) has its first 3 samples at 3x the calibrated range."""
        x = np.random.default_rng(seed).standard_normal((n, *M.input_shape(self.path(name)))).astype(np.float32)
        if seed == 2:
            x[:3] *= 3  # saturates activations past their calibrated ranges
        return x

    def test_inputs(self, name: str) -> np.ndarray:
        return self.inputs(name, TEST, seed=2)

    def compiled(self, name: str):
        if name not in self._compiled:
            calibration = self.inputs(name, CALIBRATION, seed=1)
            self._compiled[name] = compile_onnx(self.path(name), calibration, self.root / f"{name}-out", name=name)
        return self._compiled[name]

    def quantized_inputs(self, name: str) -> np.ndarray:
        graph = self.compiled(name).graph
        return graph.tensors[graph.input].quant.quantize(nchw_to_nhwc(self.test_inputs(name)))


@pytest.fixture(scope="module")
def zoo(tmp_path_factory) -> Zoo:
    return Zoo(tmp_path_factory.mktemp("compiler"))


def onnxruntime_outputs(path: Path, x: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.log_severity_level = 3
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x})[0]


def initializers(path: Path) -> dict[str, np.ndarray]:
    import onnx

    return {t.name: onnx.numpy_helper.to_array(t) for t in onnx.load(str(path)).graph.initializer}


# ---- 1. the reader: float IR against onnxruntime -------------------------------------------------

KINDS = {
    "student": ["conv"] + ["dwconv", "conv"] * 5 + ["avgpool", "reshape", "fc"],  # no BatchNorm left
    "residual": ["conv", "conv", "conv", "add", "conv", "add", "avgpool", "reshape", "fc"],
    "pools": ["conv", "maxpool", "avgpool", "concat", "reshape", "fc"],
    "softmax_head": ["conv", "avgpool", "reshape", "fc", "fc", "softmax"],
    "bn_depth_mult": ["conv", "dwconv", "dwconv", "avgpool", "reshape", "fc"],
    "pad": ["conv", "dwconv", "conv", "avgpool", "reshape", "fc"],
    "simd_shapes": ["conv", "dwconv", "conv", "dwconv", "add", "conv", "avgpool", "reshape", "fc"],
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


# ---- 2. refusals ------------------------------------------------------------------------------------

ERRORS = {
    "sigmoid": (lambda rng: M.with_unsupported(rng, "Sigmoid"), ["'gate'", "(Sigmoid)", "not supported"]),
    "hardswish": (lambda rng: M.with_unsupported(rng, "HardSwish"), ["'gate'", "(HardSwish)", "not supported"]),
    "grouped_conv": (M.grouped_conv, ["'gconv'", "(Conv)", "groups=2"]),
    "dilation": (M.dilated_conv, ["'dilated'", "(Conv)", "dilation"]),
    "clip_min_-1": (M.clip_negative, ["'clip_neg'", "(Clip)", "-1.0"]),
    "opset_11": (M.old_opset, ["opset 11", "13"]),
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


# ---- 3. bit-exactness: C (sanitized), TFLite Micro, LiteRT ---------------------------------------


# The student and the softmax head hit LiteRT's FULLY_CONNECTED rounding on these inputs when their
# classifier was written as FULLY_CONNECTED; as a 1x1 CONV_2D all three agree.
BITEXACT = MODELS


@pytest.mark.slow
@needs_gcc
@pytest.mark.parametrize("name", BITEXACT)
def test_c_tflm_litert_bitexact(zoo, name):
    pytest.importorskip("tflite_micro")
    pytest.importorskip("ai_edge_litert")
    from compilers.verify import verify

    compiled = zoo.compiled(name)
    reference = run_int8(compiled.graph, zoo.quantized_inputs(name))
    assert len(np.unique(reference.reshape(TEST, -1), axis=0)) >= TEST // 2  # outputs depend on the input
    report = verify(compiled, zoo.test_inputs(name), sanitize=True, latency=False, arm=False)
    assert report["samples"] == TEST
    assert "-fsanitize=address,undefined" in report["c_flags"]
    assert report["c_vs_reference_bitexact"] == 1.0
    assert report["tflm_vs_c_bitexact"] == 1.0
    assert report["litert_vs_c_bitexact"] == 1.0


@functools.cache
def host_has_avx2() -> bool:
    proc = subprocess.run(["gcc", "-march=native", "-dM", "-E", "-"], input="", capture_output=True, text=True,
                          check=False)
    return "__AVX2__" in proc.stdout


# the kernels' paths: portable C (what Cortex-M runs), AVX2 (pmaddwd), and the host's best
# (-march=native: AVX512-VNNI's vpdpbusd on hosts that have it)
C_PATHS = {"portable": PORTABLE_CFLAGS, "avx2": "-std=c99 -O2 -mavx2 -Wall -Wextra -Werror", "native": HOST_CFLAGS}


@needs_gcc
@pytest.mark.parametrize("path", list(C_PATHS))
@pytest.mark.parametrize("name", MODELS)
def test_c_paths_bitexact(zoo, tmp_path, name, path):
    """Every path through the C kernels, under ASan/UBSan, gives the numpy reference's integers."""
    if path != "portable" and not host_has_avx2():
        pytest.skip("the host has no AVX2")
    compiled = zoo.compiled(name)
    xq = zoo.quantized_inputs(name)
    reference = run_int8(compiled.graph, xq).reshape(len(xq), -1)
    exe = build_host(compiled.dir / "c", tmp_path / "build", sanitize=True, cflags=C_PATHS[path])
    out, _ = run_host(exe, xq, reference.shape[1])
    np.testing.assert_array_equal(out, reference)


REQUANT_CHECK = r"""
#include <stdio.h>
#include "nf_kernels.c"

static uint32_t state = 2463534242u; /* xorshift32 */
static uint32_t next(void) { state ^= state << 13; state ^= state >> 17; state ^= state << 5; return state; }

int main(void) {
  static const int32_t edges[] = {0, 1, -1, 2, -2, 3, -3, 1 << 30, -(1 << 30), 2147483647, -2147483647 - 1};
  long bad = 0;
  for (long it = 0; it < 200000; ++it) {
    int32_t x[16], mult[8], shift[8], got[16];
    int8_t bytes[16];
    for (int i = 0; i < 16; ++i) x[i] = it % 4 == 0 ? edges[next() % 11] : (int32_t)next() >> (next() % 32);
    for (int i = 0; i < 8; ++i) {
      mult[i] = it % 8 == 1 ? (int32_t[]){0, 1, 1 << 30, 2147483647}[next() % 4] : (int32_t)(next() >> 1);
      shift[i] = (int32_t)(next() % 62) - 31; /* left 30 ... right 31 */
    }
    const nf_requant8_params q = nf_requant8_channels(mult, shift);
    const __m256i r0 = nf_requant8(&q, _mm256_loadu_si256((const __m256i *)x));
    const __m256i r1 = nf_requant8(&q, _mm256_loadu_si256((const __m256i *)(x + 8)));
    _mm256_storeu_si256((__m256i *)got, r0);
    _mm256_storeu_si256((__m256i *)(got + 8), r1);
    const int32_t zp = (int32_t)(next() % 256) - 128, lo = -128 + (int32_t)(next() % 64), hi = 127 - (int32_t)(next() % 64);
    const nf_output8_params oq = nf_output8_prepare(zp, lo, hi);
    nf_output8x2_store(&oq, r0, r1, bytes, bytes + 8);
    if (it % 2) nf_output8_store(&oq, r1, bytes + 8);
    for (int i = 0; i < 16; ++i) {
      const int32_t want = nf_requant(x[i], mult[i % 8], shift[i % 8]);
      const int64_t moved = (int64_t)want + zp;
      if (got[i] != want || bytes[i] != (moved < lo ? lo : moved > hi ? hi : moved)) {
        if (bad++ < 5) printf("x=%d mult=%d shift=%d: %d, want %d\n", x[i], mult[i % 8], shift[i % 8], got[i], want);
      }
    }
  }
  printf("%ld mismatches\n", bad);
  return bad != 0;
}
"""


@needs_gcc
@pytest.mark.parametrize("path", ["avx2", "native"])
def test_vector_requantization_matches_scalar(tmp_path, path):
    """nf_requant8 and the 16-lane output store against the scalar TFLite arithmetic on 3.2 million
    values: every shift from 30 left to 31 right, multipliers 0 to 2^31 - 1, INT32_MIN and MAX."""
    if not host_has_avx2():
        pytest.skip("the host has no AVX2")
    kernels = Path(__file__).resolve().parents[1] / "compilers" / "c"
    (tmp_path / "check.c").write_text(REQUANT_CHECK)
    flags = "-std=c99 -O2 " + ("-mavx2" if path == "avx2" else "-march=native")
    subprocess.run(["gcc", *flags.split(), *SANITIZE.split(), "-I", str(kernels), "-o", str(tmp_path / "check"),
                    str(tmp_path / "check.c")], check=True)
    proc = subprocess.run([str(tmp_path / "check")], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.strip() == "0 mismatches"


def linear_outputs(tmp_path: Path, kind: str, runtime: str) -> np.ndarray:
    from compilers.build import CompileConfig
    from compilers.verify import run_litert, run_tflm

    path = M.save(M.linear_as(np.random.default_rng(7), kind), tmp_path / f"{kind}.onnx")
    shape = M.input_shape(path)
    calibration = np.random.default_rng(8).standard_normal((64, *shape)).astype(np.float32)
    compiled = compile_onnx(path, calibration, tmp_path / kind, config=CompileConfig(backends=["tflite"]))
    x = np.random.default_rng(9).standard_normal((200, *shape)).astype(np.float32)
    xq = compiled.graph.tensors[compiled.graph.input].quant.quantize(nchw_to_nhwc(x))
    tflite = (compiled.dir / "model.tflite").read_bytes()
    reference = run_int8(compiled.graph, xq).reshape(len(xq), -1)
    if runtime == "tflm":
        out = run_tflm(tflite, xq, 64 * 1024)[0]
    else:
        out = run_litert(tflite, xq, reference_kernels=True)
    return out.reshape(len(xq), -1), reference


@pytest.mark.parametrize("kind", ["gemm", "conv1x1"])
def test_litert_and_tflm_fully_connected_agree(tmp_path, kind):
    """One 16 -> 8 linear layer, on 200 inputs. LiteRT's reference FULLY_CONNECTED rounds once where
    TFLM rounds twice (1 LSB apart on a few percent of outputs), so the writer emits linear layers
    as 1x1 CONV_2D, where both runtimes round like our C."""
    pytest.importorskip("tflite_micro")
    pytest.importorskip("ai_edge_litert")
    tflm, reference = linear_outputs(tmp_path, kind, "tflm")
    np.testing.assert_array_equal(tflm, reference)  # TFLM and the numpy reference agree either way
    litert, _ = linear_outputs(tmp_path, kind, "litert")
    assert np.abs(litert.astype(int) - tflm).max() <= 1
    np.testing.assert_array_equal(litert, tflm)


# ---- 4. the memory plan ----------------------------------------------------------------------------


def lifetimes(graph: Graph) -> dict[str, tuple[int, int]]:
    """(op that writes it, last op that reads it) per tensor, from the graph alone."""
    live = {graph.input: [-1, -1]}
    for step, op in enumerate(graph.ops):
        for name in op.inputs:
            live[name][1] = step
        live[op.output] = [step, step]
    live[graph.output][1] = len(graph.ops)
    return {name: (a, b) for name, (a, b) in live.items()}


def check_plan(graph: Graph, plan) -> None:
    """Invariants of a memory plan, each checked without the planner's own bookkeeping where possible."""
    sizes = {name: t.size for name, t in graph.tensors.items()}
    assert set(plan.offsets) == set(graph.tensors)  # every tensor has a place
    assert all(plan.offsets[n] >= 0 and plan.offsets[n] + sizes[n] <= plan.arena_bytes for n in sizes)

    # buffers: same offset for the tensors sharing one, big enough, and no two alive at once overlap
    placed = []
    for b in plan.buffers:
        offset = plan.offsets[b.tensors[0]]
        assert all(plan.offsets[n] == offset for n in b.tensors)
        assert all(sizes[n] <= b.size for n in b.tensors)
        placed.append((offset, b))
    assert sorted(n for b in plan.buffers for n in b.tensors) == sorted(graph.tensors)
    assert plan.arena_bytes == max(offset + b.size for offset, b in placed)
    for i, (oa, a) in enumerate(placed):
        for ob, b in placed[i + 1 :]:
            if not (a.last < b.first or b.last < a.first):
                assert oa + a.size <= ob or ob + b.size <= oa, f"{a.tensors} and {b.tensors} overlap while alive"

    # simulate the arena: a distinct byte pattern per tensor (a reshape keeps its input's bytes);
    # every op must find its inputs intact when it runs, and the output must survive to the end
    rng = np.random.default_rng(0)
    arena = np.zeros(plan.arena_bytes, np.uint8)
    pattern = {graph.input: rng.integers(0, 256, sizes[graph.input], dtype=np.uint8)}

    def write(name: str) -> None:
        arena[plan.offsets[name] : plan.offsets[name] + sizes[name]] = pattern[name]

    def intact(name: str) -> bool:
        return np.array_equal(arena[plan.offsets[name] : plan.offsets[name] + sizes[name]], pattern[name])

    write(graph.input)
    for step, op in enumerate(graph.ops):
        for name in op.inputs:
            assert intact(name), f"op {step} ({op.kind}) reads {name!r}, already overwritten"
        if op.kind == "reshape":
            pattern[op.output] = pattern[op.inputs[0]]
        else:
            pattern[op.output] = rng.integers(0, 256, sizes[op.output], dtype=np.uint8)
        write(op.output)
    assert intact(graph.output)


def random_graph(rng: np.random.Generator, n_ops: int) -> Graph:
    """A random DAG of the op kinds the planner treats differently: new buffers (conv, concat),
    aliases (reshape) and in-place candidates (add); inputs drawn from recent tensors so some die at
    once and some are read again much later."""
    shapes = [(1, 4, 4, 2), (1, 4, 4, 3), (1, 2, 2, 8), (1, 8, 8, 1), (1, 3, 5, 7)]
    tensors = {"x": Tensor("x", shapes[int(rng.integers(len(shapes)))])}
    ops: list[Op] = []
    names = ["x"]
    for i in range(n_ops):
        a = names[-1] if rng.random() < 0.5 else names[int(rng.integers(max(0, len(names) - 5), len(names)))]
        out = f"t{i}"
        kind = str(rng.choice(["conv", "add", "reshape", "concat"], p=[0.35, 0.3, 0.15, 0.2]))
        same = [n for n in names if tensors[n].shape == tensors[a].shape]
        if kind == "add" and len(same) > 1:
            b = same[int(rng.integers(len(same)))]
            ops.append(Op("add", out, [a, b], out))
            shape = tensors[a].shape
        elif kind == "reshape":
            ops.append(Op("reshape", out, [a], out))
            shape = (1, tensors[a].size)
        elif kind == "concat":
            b = names[int(rng.integers(len(names)))]
            ops.append(Op("concat", out, [a, b], out, axis=1))
            shape = (1, tensors[a].size + tensors[b].size)
        else:
            ops.append(Op("conv", out, [a], out))
            shape = shapes[int(rng.integers(len(shapes)))]
        tensors[out] = Tensor(out, shape)
        names.append(out)
    return Graph(input="x", output=names[-1], tensors=tensors, ops=ops)


def test_plan_invariants_on_random_graphs():
    rng = np.random.default_rng(0)
    reused = in_place = 0
    for _ in range(40):
        graph = random_graph(rng, int(rng.integers(3, 25)))
        plan = plan_memory(graph)
        check_plan(graph, plan)
        reused += plan.arena_bytes < sum(b.size for b in plan.buffers)
        in_place += sum(len(b.tensors) > 1 for b in plan.buffers)
    assert reused > 20 and in_place > 20  # the graphs exercise reuse and aliasing, not just side by side


@pytest.mark.parametrize("name", MODELS)
def test_plan_invariants_on_models(zoo, name):
    compiled = zoo.compiled(name)
    check_plan(compiled.graph, compiled.plan)


@pytest.mark.parametrize("name", MODELS)
def test_arena_not_larger_than_tflm(zoo, name):
    pytest.importorskip("tflite_micro")
    from compilers.verify import run_tflm

    compiled = zoo.compiled(name)
    tflite = (compiled.dir / "model.tflite").read_bytes()
    arena = max(4 * compiled.plan.arena_bytes, 64 * 1024) + 64 * 1024
    _, alloc = run_tflm(tflite, zoo.quantized_inputs(name)[:2], arena)
    assert alloc["tflm_arena_head_bytes"], alloc
    assert compiled.plan.arena_bytes <= alloc["tflm_arena_head_bytes"]


@pytest.mark.parametrize("name", MODELS)
def test_arena_in_c_and_artifacts(zoo, name):
    compiled = zoo.compiled(name)
    header = (compiled.dir / "c" / "model.h").read_text()
    assert int(re.search(r"#define NF_ARENA_SIZE (\d+)", header).group(1)) == compiled.plan.arena_bytes
    words = int(re.search(r"static int32_t nf_arena_words\[(\d+)\];", (compiled.dir / "c" / "model.c").read_text())[1])
    assert words * 4 == compiled.plan.arena_bytes  # buffers are word-aligned, so no slack
    assert load_summary(compiled.dir)["arena_bytes"] == compiled.plan.arena_bytes
    assert load_compiled(compiled.dir).plan.arena_bytes == compiled.plan.arena_bytes


@needs_arm
@pytest.mark.parametrize("name", ["student", "softmax_head"])
def test_arena_is_the_only_ram_on_cortex_m(zoo, name):
    from compilers.verify import arm_sizes

    compiled = zoo.compiled(name)
    m4 = arm_sizes(compiled.dir / "c")["cortex-m4"]
    assert m4["bss"] == compiled.plan.arena_bytes and m4["data"] == 0


# ---- 5. int8 conventions -----------------------------------------------------------------------


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


# ---- 6. int8 against float -------------------------------------------------------------------------


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


# ---- 7. the .tflite flatbuffer ---------------------------------------------------------------------

OP_CODES = {
    "student": {"CONV_2D", "DEPTHWISE_CONV_2D", "PAD", "AVERAGE_POOL_2D", "RESHAPE"},
    "residual": {"CONV_2D", "PAD", "ADD", "AVERAGE_POOL_2D", "RESHAPE"},
    "pools": {"CONV_2D", "MAX_POOL_2D", "AVERAGE_POOL_2D", "CONCATENATION", "RESHAPE"},
    "softmax_head": {"CONV_2D", "AVERAGE_POOL_2D", "RESHAPE", "SOFTMAX"},
    "bn_depth_mult": {"CONV_2D", "DEPTHWISE_CONV_2D", "AVERAGE_POOL_2D", "RESHAPE"},
    "pad": {"CONV_2D", "PAD", "DEPTHWISE_CONV_2D", "AVERAGE_POOL_2D", "RESHAPE"},
    "simd_shapes": {"CONV_2D", "DEPTHWISE_CONV_2D", "ADD", "AVERAGE_POOL_2D", "RESHAPE"},
}
# stride-2 layers padded (1, 1) on an even input (TFLite SAME pads (0, 1)), and pad's asymmetric depthwise
PADS = {"student": 3, "residual": 1, "pools": 0, "softmax_head": 0, "bn_depth_mult": 0, "pad": 2, "simd_shapes": 0}


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
