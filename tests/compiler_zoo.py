"""The compiler tests' model zoo (tests/test_compiler*.py): tiny seeded ONNX models, their inputs and
compiled folders, built on first use and shared by the session (the ``zoo`` fixture in conftest.py)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import onnx_models as M
import pytest

from compilers.build import compile_onnx, nchw_to_nhwc


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


def dsp_shapes(rng):
    """Shapes for every path of the Arm DSP kernels (compilers/c/nf_dsp.h), which the emulated Cortex-M4
    and M7 build: a window gathered from one input channel, a 1x1 convolution read in place with a
    tail of 30 % 4 output channels, a strided depthwise convolution on 28 channels and a tail of 2, a
    3x3 convolution on 30 channels whose 270 taps are too many to gather (the portable loops), a 3x3
    convolution on 32 channels read in place two pixels at a time where their windows match (288
    taps, more than a gathered window holds; 30 pixels, rows of 5), a 1x1 convolution to 14 channels,
    and a fully connected layer on 14 inputs (three words and two bytes)."""
    inits: dict = {"fc.w": (rng.standard_normal((3, 14)) * 0.3).astype(np.float32), "fc.b": np.zeros(3, np.float32)}
    nodes = [
        M._conv(rng, inits, "first", "input", "a", 1, 8, 3, pads=[1, 1, 1, 1]),
        M._node("Relu", ["a"], "ar", "relu_a"),
        M._conv(rng, inits, "pw", "ar", "b", 8, 30, 1),
        M._node("Relu", ["b"], "br", "relu_b"),
        M._conv(rng, inits, "dw", "br", "c", 30, 30, 3, group=30, pads=[0, 0, 1, 1], strides=[2, 2]),
        M._node("Relu", ["c"], "cr", "relu_c"),
        M._conv(rng, inits, "big", "cr", "d", 30, 32, 3, pads=[1, 1, 1, 1]),
        M._node("Relu", ["d"], "dr", "relu_d"),
        M._conv(rng, inits, "wide", "dr", "e", 32, 16, 3, pads=[1, 1, 1, 1]),
        M._node("Relu", ["e"], "er", "relu_e"),
        M._conv(rng, inits, "narrow", "er", "k", 16, 14, 1),
        M._node("Relu", ["k"], "kr", "relu_k"),
        M._node("GlobalAveragePool", ["kr"], "g", "gap"),
        M._node("Flatten", ["g"], "h", "flatten", axis=1),
        M._node("Gemm", ["h", "fc.w", "fc.b"], "output", "fc", transB=1),
    ]
    return M._model(nodes, inits, (1, 12, 10), (3,))


BUILDERS = {
    "student": lambda path: M.export_student(path, seed=0),
    "residual": lambda path: M.export_residual(path, seed=0),
    "pools": lambda path: M.save(M.pools_concat_flatten(np.random.default_rng(10)), path),
    "softmax_head": lambda path: M.save(M.relu6_matmul_softmax(np.random.default_rng(11)), path),
    "bn_depth_mult": lambda path: M.save(M.batchnorm_depth_multiplier(np.random.default_rng(12)), path),
    "pad": lambda path: M.save(M.strided_padding(np.random.default_rng(13)), path),
    "simd_shapes": lambda path: M.save(simd_shapes(np.random.default_rng(14)), path),
    "dsp_shapes": lambda path: M.save(dsp_shapes(np.random.default_rng(15)), path),
}
MODELS = list(BUILDERS)
CALIBRATION, TEST = 64, 20

needs_gcc = pytest.mark.skipif(shutil.which("gcc") is None, reason="gcc is not installed")
needs_arm = pytest.mark.skipif(shutil.which("arm-none-eabi-gcc") is None, reason="arm-none-eabi-gcc is not installed")
needs_qemu = pytest.mark.skipif(shutil.which("arm-none-eabi-gcc") is None or shutil.which("qemu-system-arm") is None,
                                reason="arm-none-eabi-gcc or qemu-system-arm is not installed")


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
