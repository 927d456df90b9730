"""int8 post-training quantization with onnxruntime (QDQ, per-channel weights).

Activations: per-tensor int8 calibrated on training samples; weights: per-channel
symmetric int8 — the layout TFLite Micro and CMSIS-NN run.
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
    return Path(out_path)
