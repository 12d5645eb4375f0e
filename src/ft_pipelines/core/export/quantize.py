"""int8 static quantisation with onnxruntime: QDQ format, per-channel weights, activation ranges
calibrated on real training images."""

from __future__ import annotations

import contextlib
import logging
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quantize_static,
)
from onnxruntime.quantization.shape_inference import quant_pre_process

from ft_pipelines.core.export.artifact import INPUT_NAME, OnnxModel

logger = logging.getLogger(__name__)


@contextlib.contextmanager
def _quiet_quantizer() -> Iterator[None]:
    """onnxruntime.quantization logs one INFO line per adjusted weight scale on the root logger
    (hundreds per model): drop those, keep its warnings."""

    def keep(record: logging.LogRecord) -> bool:
        return record.levelno >= logging.WARNING or "onnxruntime" not in record.pathname

    root = logging.getLogger()
    root.addFilter(keep)
    try:
        yield
    finally:
        root.removeFilter(keep)


class ImageCalibrationReader(CalibrationDataReader):
    """Feeds normalised batches of uint8 images [N, 3, H, W] to the calibrator."""

    def __init__(self, images_uint8: np.ndarray, mean: list[float], std: list[float],
                 batch_size: int = 16) -> None:
        self.images = images_uint8
        self.mean = np.asarray(mean, dtype=np.float32).reshape(1, -1, 1, 1)
        self.std = np.asarray(std, dtype=np.float32).reshape(1, -1, 1, 1)
        self.batch_size = batch_size
        self.start = 0

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self.start >= len(self.images):
            return None
        batch = self.images[self.start:self.start + self.batch_size]
        self.start += self.batch_size
        return {INPUT_NAME: (batch.astype(np.float32) / np.float32(255.0) - self.mean) / self.std}

    def rewind(self) -> None:
        self.start = 0


def quantize_int8(fp32: OnnxModel, calibration_images: np.ndarray) -> OnnxModel:
    """Static int8 (QDQ, per-channel int8 weights, uint8 activations) of an fp32 export.

    uint8 activations with int8 weights ("U8S8") is what onnxruntime's x86 kernels are fastest
    with (VPMADDUBSW / VNNI): on the demo's pruned model 0.80x the fp32 latency, where int8
    activations ("S8S8") were 1.39x, i.e. slower than fp32 (benchmarks/bench_inference.py).

    The graph is first pre-processed (``quant_pre_process``: shape inference and graph
    optimisation, as onnxruntime recommends before quantising). The sidecar keeps the
    classes and normalisation, with ``precision: int8`` and how it was calibrated.
    """
    images = np.asarray(calibration_images)
    if images.dtype != np.uint8 or images.ndim != 4 or len(images) == 0:
        raise ValueError(f"Calibration needs uint8 images [N, 3, H, W], N >= 1; got "
                         f"{images.dtype} {images.shape}: check export.calibration_images")
    with tempfile.TemporaryDirectory(prefix="ft_pipelines_int8_") as tmp:
        source, prepared, target = (Path(tmp) / n for n in ("fp32.onnx", "pre.onnx", "int8.onnx"))
        source.write_bytes(fp32.model_bytes)
        with _quiet_quantizer():
            quant_pre_process(str(source), str(prepared))
            quantize_static(
                str(prepared), str(target),
                ImageCalibrationReader(images, fp32.mean, fp32.std),
                quant_format=QuantFormat.QDQ, per_channel=True,
                activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                # MinMax: fast, and it works with a short last batch (the histogram methods do not)
                calibrate_method=CalibrationMethod.MinMax,
            )
        model_bytes = target.read_bytes()
    onnx.checker.check_model(onnx.load_from_string(model_bytes), full_check=True)
    quantization: dict[str, Any] = {
        "method": "onnxruntime quantize_static", "format": "QDQ", "per_channel": True,
        "weights": "int8", "activations": "uint8", "calibration_method": "minmax",
        "calibration_images": int(len(images)), "fp32_sha256": fp32.sha256,
    }
    logger.info("int8 model: %.2f MB (fp32 %.2f MB), calibrated on %d images",
                len(model_bytes) / 1e6, len(fp32.model_bytes) / 1e6, len(images))
    return fp32.with_graph(model_bytes, precision="int8", quantization=quantization)
