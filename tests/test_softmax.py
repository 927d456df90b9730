"""int8 SOFTMAX: compilers.softmax (numpy) and compilers/c/nf_softmax.c vs TFLite Micro, bit for bit."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from compilers.softmax import softmax_int8, softmax_params

C_DIR = Path(__file__).resolve().parents[1] / "compilers" / "c"

# (scale, zero point): typical int8 logit scales, plus odd / extreme ones
SCALE_ZP = [
    (0.01, 0),
    (0.02, -5),
    (0.0390625, 12),
    (0.05, -128),
    (0.1, 3),
    (0.125, 127),
    (0.2, -40),
    (0.3, 17),
    (0.5, 0),
    (0.003, 9),
    (0.0734, -77),
    (1.0, 0),
    (7.3, -2),
    (40.0, 5),
]
DEPTHS = [1, 2, 3, 10, 37, 100, 511]


def _model_bytes(n: int, k: int, scale: float, zp: int, beta: float = 1.0) -> bytes:
    import flatbuffers
    from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as S

    def tensor(buf, name, s, z):
        t = S.TensorT()
        t.shape, t.type, t.buffer, t.name = [n, k], S.TensorType.INT8, buf, name
        q = S.QuantizationParametersT()
        q.scale, q.zeroPoint, q.quantizedDimension = [float(s)], [int(z)], 0
        t.quantization = q
        return t

    oc = S.OperatorCodeT()
    oc.builtinCode = oc.deprecatedBuiltinCode = S.BuiltinOperator.SOFTMAX
    oc.version = 1
    op = S.OperatorT()
    op.opcodeIndex, op.inputs, op.outputs = 0, [0], [1]
    op.builtinOptionsType = S.BuiltinOptions.SoftmaxOptions
    op.builtinOptions = S.SoftmaxOptionsT()
    op.builtinOptions.beta = beta
    sg = S.SubGraphT()
    sg.tensors = [tensor(1, "x", scale, zp), tensor(2, "y", 1.0 / 256.0, -128)]
    sg.inputs, sg.outputs, sg.operators, sg.name = [0], [1], [op], "main"
    m = S.ModelT()
    m.version, m.subgraphs, m.operatorCodes = 3, [sg], [oc]
    m.buffers = [S.BufferT(), S.BufferT(), S.BufferT()]
    b = flatbuffers.Builder(1024)
    b.Finish(m.Pack(b), file_identifier=b"TFL3")
    return bytes(b.Output())


def _tflm(x: np.ndarray, scale: float, zp: int, beta: float = 1.0) -> np.ndarray:
    runtime = pytest.importorskip("tflite_micro.python.tflite_micro.runtime")
    it = runtime.Interpreter.from_bytes(_model_bytes(*x.shape, scale, zp, beta), arena_size=4 * x.size + 32768)
    it.set_input(x, 0)
    it.invoke()
    return it.get_output(0)


def _inputs(rng: np.random.Generator, n: int, k: int) -> np.ndarray:
    """Uniform rows, narrow rows (near-ties), constant rows, extremes, one-hot, two-level rows."""
    x = rng.integers(-128, 128, (n, k))
    lo = rng.integers(-128, 128, n)
    width = rng.choice([0, 1, 3, 8, 30, 255], n)
    narrow = lo[:, None] + rng.integers(0, 256, (n, k)) % (width[:, None] + 1)
    x[n // 4 : n // 2] = narrow[n // 4 : n // 2]
    x[0], x[1], x[2] = 127, -128, 0
    x[3], x[3, 0] = -128, 127  # maximal spread
    x[4], x[4, -1] = 127, -128
    x[5, : k // 2], x[5, k // 2 :] = 127, 126
    x[6] = rng.choice([-128, 127], k)
    return np.clip(x, -128, 127).astype(np.int8)


def test_softmax_params_known_values():
    # beta * scale * 2**26, QuantizeMultiplierGreaterThanOne; diff_min = -floor(31 * 2**26 / 2**shift)
    assert softmax_params(0.5) == (1 << 30, 26, -31)
    assert softmax_params(0.1) == (1717986944, 23, -248)  # frexp(0.1 * 2**26) = 0.8 * 2**23
    assert softmax_params(1.0 / 256) == (1 << 30, 19, -3968)
    assert softmax_params(40.0) == (2**31 - 1, 31, 0)  # capped at 2**31 - 1
    with pytest.raises(ValueError):
        softmax_params(1e-9)


@pytest.mark.parametrize("scale,zp", SCALE_ZP)
def test_matches_tflm(scale, zp):
    rng = np.random.default_rng(int(scale * 1e6) + zp + 1000)
    for k in DEPTHS:
        x = _inputs(rng, 64 if k < 100 else 24, k)
        np.testing.assert_array_equal(softmax_int8(x, scale), _tflm(x, scale, zp), err_msg=f"k={k}")


def test_matches_tflm_random_scales_and_beta():
    rng = np.random.default_rng(1234)
    for trial in range(80):
        scale = float(np.float32(np.exp(rng.uniform(np.log(1e-3), np.log(64.0)))))
        zp = int(rng.integers(-128, 128))
        beta = 1.0 if trial < 60 else float(rng.choice([0.25, 0.5, 2.0, 3.7]))
        k = int(rng.integers(1, 200))
        x = _inputs(rng, 40, k)
        np.testing.assert_array_equal(softmax_int8(x, scale, beta), _tflm(x, scale, zp, beta), err_msg=f"{scale} {beta}")


def test_long_rows_match_tflm():
    # sum of exps stays below 2**28 when the row is spread out, so TFLM handles any depth
    rng = np.random.default_rng(7)
    for k, scale in [(1000, 0.1), (3000, 0.5), (600, 0.05)]:
        x = rng.integers(-128, 128, (6, k)).astype(np.int8)
        np.testing.assert_array_equal(softmax_int8(x, scale), _tflm(x, scale, 0))


def test_sum_beyond_2_pow_28_is_exact_zero():
    # >= 512 entries tied at the max: TFLite's RoundingDivideByPOT asserts (exponent > 31) and
    # TFLM aborts; we return the exact continuation (every probability < 0.5/256 -> -128)
    assert np.all(softmax_int8(np.full((2, 512), 7, np.int8), 0.1) == -128)
    assert np.all(softmax_int8(np.full((1, 511), 7, np.int8), 0.1) == -127)


def test_matches_litert_reference_kernel():
    lrt = pytest.importorskip("ai_edge_litert.interpreter")
    rng = np.random.default_rng(99)
    for scale, zp in SCALE_ZP[::2]:
        x = _inputs(rng, 32, 50)
        li = lrt.Interpreter(
            model_content=_model_bytes(*x.shape, scale, zp),
            experimental_op_resolver_type=lrt.OpResolverType.BUILTIN_REF,
        )
        li.allocate_tensors()
        li.set_tensor(li.get_input_details()[0]["index"], x)
        li.invoke()
        np.testing.assert_array_equal(softmax_int8(x, scale), li.get_tensor(li.get_output_details()[0]["index"]))


def test_shapes_and_dtype():
    x = np.array([3, -7, 100, 100, -128], np.int8)
    y = softmax_int8(x, 0.05)
    assert y.shape == x.shape and y.dtype == np.int8
    np.testing.assert_array_equal(y, softmax_int8(x[None], 0.05)[0])
    assert softmax_int8(np.zeros((0, 5), np.int8), 0.1).shape == (0, 5)
    with pytest.raises(TypeError):
        softmax_int8(x.astype(np.int32), 0.05)
    # vectorized: 10,000 rows in one call
    big = np.random.default_rng(3).integers(-128, 128, (10_000, 10)).astype(np.int8)
    np.testing.assert_array_equal(softmax_int8(big, 0.1)[:50], softmax_int8(big[:50], 0.1))


_C_MAIN = r"""
#include <stdio.h>
#include <stdlib.h>
#include "nf_softmax.h"
int main(int argc, char **argv) {
  int rows, depth; long n; int8_t *in, *out; FILE *f;
  if (argc != 8) return 2;
  rows = atoi(argv[1]); depth = atoi(argv[2]); n = (long)rows * depth;
  in = malloc(n + 1); out = malloc(n + 1);
  f = fopen(argv[6], "rb"); if (!f || fread(in, 1, n, f) != (size_t)n) return 3; fclose(f);
  nf_softmax_s8(in, out, rows, depth, (int32_t)atol(argv[3]), (int32_t)atol(argv[4]), (int32_t)atol(argv[5]));
  f = fopen(argv[7], "wb"); if (!f || fwrite(out, 1, n, f) != (size_t)n) return 4; fclose(f);
  free(in); free(out);
  return 0;
}
"""


def test_c_kernel_matches_numpy(tmp_path):
    gcc = shutil.which("gcc")
    if gcc is None:
        pytest.skip("gcc not available")
    (tmp_path / "main.c").write_text(_C_MAIN)
    exe = tmp_path / "softmax_test"
    flags = ["-std=c99", "-O2", "-Wall", "-Wextra", "-Werror", "-fsanitize=address,undefined"]
    flags += ["-fno-sanitize-recover=all", f"-I{C_DIR}"]
    subprocess.run([gcc, *flags, str(C_DIR / "nf_softmax.c"), str(tmp_path / "main.c"), "-o", str(exe)], check=True)
    env = dict(os.environ, ASAN_OPTIONS="detect_leaks=0", UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1")

    rng = np.random.default_rng(2024)
    cases = [(s, _inputs(rng, 40, k)) for s, _ in SCALE_ZP for k in (1, 7, 100)]
    cases += [(0.1, np.full((2, 512), 5, np.int8)), (0.01, np.full((1, 9000), 127, np.int8))]  # sum >= 2**28 / wraps
    cases += [(0.3, _inputs(rng, 8, 2000)), (0.02, rng.integers(-128, 128, (3, 5000)).astype(np.int8))]
    for i, (scale, x) in enumerate(cases):
        src, dst = tmp_path / f"in{i}.bin", tmp_path / f"out{i}.bin"
        src.write_bytes(x.tobytes())
        args = [str(v) for v in (*x.shape, *softmax_params(scale), src, dst)]
        proc = subprocess.run([str(exe), *args], check=False, env=env, capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
        y = np.frombuffer(dst.read_bytes(), np.int8).reshape(x.shape)
        np.testing.assert_array_equal(y, softmax_int8(x, scale), err_msg=f"case {i} scale {scale}")
