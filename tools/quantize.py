"""int8 post-training quantization with onnxruntime (QDQ, per-channel weights).

Activations: per-tensor int8 calibrated on training samples; weights: per-channel
symmetric int8 — the layout TFLite Micro and CMSIS-NN run. The file is written with every int8
tensor offset by 128 into uint8 (values and zero points alike: the same real numbers, the same
arithmetic), because onnxruntime's fused u8 x s8 kernels on x86 CPUs without VNNI add pairs of
products in int16 and saturate, where its u8 x u8 kernels do not.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from compilers.onnx_export import INPUT_NAME
from knowledge.io import atomic_path

log = logging.getLogger(__name__)


class QuantizeConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    calibration_samples: int = Field(512, ge=16)
    per_channel: bool = True
    method: Literal["minmax", "entropy", "percentile"] = "minmax"


def quantize_int8(fp32_path: Path, out_path: Path, calibration: np.ndarray, config: QuantizeConfig) -> Path:
    """Write the int8 QDQ model for ``fp32_path``, calibrated on ``calibration`` (float NCHW)."""
    import onnx
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self, data: np.ndarray, batch: int = 64):
            self._batches = iter([data[i : i + batch] for i in range(0, len(data), batch)])

        def get_next(self):
            batch = next(self._batches, None)
            return None if batch is None else {INPUT_NAME: batch}

    method = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
              "percentile": CalibrationMethod.Percentile}[config.method]
    with tempfile.TemporaryDirectory() as tmpdir:
        prepped = Path(tmpdir) / "prepped.onnx"
        quant_pre_process(str(fp32_path), str(prepped), skip_symbolic_shape=True)
        with atomic_path(Path(out_path)) as tmp:
            quantize_static(
                str(prepped),
                str(tmp),
                Reader(calibration.astype(np.float32)),
                quant_format=QuantFormat.QDQ,
                activation_type=QuantType.QInt8,
                weight_type=QuantType.QInt8,
                per_channel=config.per_channel,
                calibrate_method=method,
                extra_options={"ActivationSymmetric": False, "WeightSymmetric": True},
            )
            model = onnx.load(str(tmp))
            offset_int8_to_uint8(model)
            onnx.save(model, str(tmp))
    return Path(out_path)


def offset_int8_to_uint8(model) -> None:
    """Rewrite a QDQ model's int8 quantized tensors as uint8 (q + 128, zero point + 128), in place.

    Every quantized value and its zero point move together, so each DequantizeLinear gives the same
    real numbers and the model computes exactly what it did (checked in the tests)."""
    from onnx import TensorProto, numpy_helper

    graph = model.graph
    quantized = set()
    for node in graph.node:
        if node.op_type == "DequantizeLinear" and len(node.input) == 3:  # without a zero point it must stay int8
            quantized.update(node.input[0:1] + node.input[2:3])
        elif node.op_type == "QuantizeLinear":
            quantized.update(node.input[2:3])
    for init in graph.initializer:
        if init.name in quantized and init.data_type == TensorProto.INT8:
            shifted = (numpy_helper.to_array(init).astype(np.int16) + 128).astype(np.uint8)
            init.CopyFrom(numpy_helper.from_array(shifted, init.name))
    for info in list(graph.value_info) + list(graph.output):
        if info.type.tensor_type.elem_type == TensorProto.INT8:
            info.type.tensor_type.elem_type = TensorProto.UINT8
