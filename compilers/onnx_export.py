"""ONNX export of a trained student (fp32), with BatchNorm folded into the convolutions."""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from pathlib import Path

import numpy as np

from knowledge.io import atomic_path

log = logging.getLogger(__name__)

OPSET = 18
INPUT_NAME = "input"
OUTPUT_NAME = "logits"


def export_onnx(model, input_shape: tuple[int, int, int], path: Path) -> Path:
    """Export ``model`` (eval mode) for inputs (batch, C, H, W) with a dynamic batch; atomic write."""
    import onnx
    import torch

    # the exporter warns about torchvision ops it cannot find and a pytree deprecation: noise for users
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)
    model = model.eval()
    example = torch.zeros(1, *input_shape)
    batch = torch.export.Dim("batch", min=1, max=4096)
    with atomic_path(Path(path)) as tmp, contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        program = torch.onnx.export(
            model,
            (example,),
            dynamo=True,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_shapes=({0: batch},),
            opset_version=OPSET,
            optimize=True,  # constant folding: BatchNorm disappears into Conv weights and biases
            verbose=False,
        )
        proto = program.model_proto
        onnx.checker.check_model(proto)
        onnx.save_model(proto, str(tmp))  # small students: weights stay inside the one file
    return Path(path)


def run_onnx(path: Path, x: np.ndarray, batch_size: int = 1024, fused: bool = False) -> np.ndarray:
    """Outputs of an ONNX model on float NCHW inputs, single-threaded for reproducible figures.

    Basic graph optimizations only, so an int8 QDQ model runs as its quantize and dequantize
    arithmetic: the same figures on every host. Fused into onnxruntime's integer kernels, outputs
    may differ by a rounding step, and an s8 model saturates on x86 CPUs without VNNI (AVX2 sums
    pairs of u8 x s8 products in int16; the demo's student lost 1.2 points that way), which is why
    ``quantize_int8`` writes its models in uint8. ``fused``: all graph optimizations, as a user's
    onnxruntime runs the model by default.
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = (ort.GraphOptimizationLevel.ORT_ENABLE_ALL if fused
                                        else ort.GraphOptimizationLevel.ORT_ENABLE_BASIC)
    options.intra_op_num_threads = 1
    options.log_severity_level = 3
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    outs = [session.run(None, {INPUT_NAME: x[s : s + batch_size]})[0] for s in range(0, len(x), batch_size)]
    return np.concatenate(outs)
