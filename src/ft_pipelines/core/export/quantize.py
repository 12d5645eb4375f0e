"""int8 static quantisation with onnxruntime: the configurations that matter on CPUs (format,
weight granularity, activation type, calibration, layers kept fp32), activation ranges
calibrated on real training images."""

from __future__ import annotations

import contextlib
import io
import logging
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

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
        # the histogram calibrators print their progress to stdout: keep it out of the logs
        with contextlib.redirect_stdout(io.StringIO()):
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


@dataclass(frozen=True)
class Int8Config:
    """One way to quantise: graph format, weight granularity, activation type (weights are
    int8), calibration method, and which layers stay fp32 (``first``: the first convolution,
    ``last``: the classifier, ``depthwise``: every grouped convolution)."""

    format: Literal["QDQ", "QOperator"] = "QDQ"
    per_channel: bool = True
    activations: Literal["uint8", "int8"] = "uint8"
    calibration: Literal["minmax", "entropy", "percentile"] = "minmax"
    keep_fp32: tuple[str, ...] = ()

    def describe(self) -> dict[str, Any]:
        return {"format": self.format, "per_channel": self.per_channel, "weights": "int8",
                "activations": self.activations, "calibration_method": self.calibration,
                "keep_fp32": list(self.keep_fp32)}


# The configurations that matter on CPUs, one change at a time from today's default (QDQ,
# per-channel, U8S8, MinMax). U8S8 is what onnxruntime's x86 kernels (VPMADDUBSW / VNNI) are
# fastest with; S8S8, per-tensor, QOperator, fp32 islands and the histogram calibrations are
# the alternatives whose speed or accuracy depends on the model and the CPU.
INT8_CONFIGS: dict[str, Int8Config] = {
    "qdq_u8s8_channel_minmax": Int8Config(),
    "qdq_u8s8_tensor_minmax": Int8Config(per_channel=False),
    "qdq_s8s8_channel_minmax": Int8Config(activations="int8"),
    "qop_u8s8_channel_minmax": Int8Config(format="QOperator"),
    "qdq_u8s8_channel_minmax_fp32_first_last": Int8Config(keep_fp32=("first", "last")),
    "qdq_u8s8_channel_minmax_fp32_depthwise": Int8Config(keep_fp32=("depthwise",)),
    "qdq_u8s8_channel_entropy": Int8Config(calibration="entropy"),
    "qdq_u8s8_channel_percentile": Int8Config(calibration="percentile"),
}
DEFAULT_INT8_CONFIG = "qdq_u8s8_channel_minmax"
KEEP_FP32 = ("first", "last", "depthwise")
_CALIBRATION = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
                "percentile": CalibrationMethod.Percentile}
_ACTIVATIONS = {"uint8": QuantType.QUInt8, "int8": QuantType.QInt8}


def prepare_for_quantization(fp32: OnnxModel) -> bytes:
    """``quant_pre_process`` (shape inference and graph optimisation, as onnxruntime
    recommends before quantising): once per model, shared by every configuration tried."""
    with tempfile.TemporaryDirectory(prefix="ft_pipelines_int8_") as tmp:
        source, prepared = Path(tmp) / "fp32.onnx", Path(tmp) / "pre.onnx"
        source.write_bytes(fp32.model_bytes)
        with _quiet_quantizer():
            quant_pre_process(str(source), str(prepared))
        return prepared.read_bytes()


def nodes_kept_fp32(model_bytes: bytes, keep: tuple[str, ...]) -> list[str]:
    """Names of the nodes ``keep`` names in a (pre-processed) graph: ``first`` the first Conv,
    ``last`` the last Gemm/MatMul (the classifier), ``depthwise`` every Conv with group > 1."""
    unknown = set(keep) - set(KEEP_FP32)
    if unknown:
        raise ValueError(f"keep_fp32 {sorted(unknown)}: choose among {list(KEEP_FP32)}")
    nodes = onnx.load_from_string(model_bytes).graph.node  # topologically sorted
    convs = [n for n in nodes if n.op_type == "Conv"]
    names: list[str] = []
    if "first" in keep and convs:
        names.append(convs[0].name)
    if "last" in keep:
        names += [n.name for n in nodes if n.op_type in ("Gemm", "MatMul")][-1:]
    if "depthwise" in keep:
        names += [n.name for n in convs
                  if any(a.name == "group" and a.i > 1 for a in n.attribute)]
    return list(dict.fromkeys(names))


def quantize_config(fp32: OnnxModel, prepared: bytes, calibration_images: np.ndarray,
                    config: Int8Config, name: str = "custom") -> OnnxModel:
    """Static int8 of ``fp32`` (``prepared``: its ``prepare_for_quantization`` bytes) with one
    configuration; the sidecar keeps the classes and normalisation, with ``precision: int8``
    and how it was quantised."""
    images = np.asarray(calibration_images)
    if images.dtype != np.uint8 or images.ndim != 4 or len(images) == 0:
        raise ValueError(f"Calibration needs uint8 images [N, 3, H, W], N >= 1; got "
                         f"{images.dtype} {images.shape}: check export.calibration_images")
    batch = 16
    if config.calibration != "minmax" and len(images) > batch:
        # the histogram calibrators need equal batches: drop the short last one
        images = images[:len(images) // batch * batch]
    excluded = nodes_kept_fp32(prepared, config.keep_fp32)
    with tempfile.TemporaryDirectory(prefix="ft_pipelines_int8_") as tmp:
        source, target = Path(tmp) / "pre.onnx", Path(tmp) / "int8.onnx"
        source.write_bytes(prepared)
        with _quiet_quantizer():
            quantize_static(
                str(source), str(target), ImageCalibrationReader(images, fp32.mean, fp32.std,
                                                                 batch),
                quant_format=QuantFormat.QDQ if config.format == "QDQ" else QuantFormat.QOperator,
                per_channel=config.per_channel, activation_type=_ACTIVATIONS[config.activations],
                weight_type=QuantType.QInt8, calibrate_method=_CALIBRATION[config.calibration],
                nodes_to_exclude=excluded or None)
        model_bytes = target.read_bytes()
    onnx.checker.check_model(onnx.load_from_string(model_bytes), full_check=True)
    quantization: dict[str, Any] = {
        "method": "onnxruntime quantize_static", "config": name, **config.describe(),
        "nodes_kept_fp32": excluded, "calibration_images": int(len(images)),
        "fp32_sha256": fp32.sha256}
    logger.info("int8 %s: %.2f MB (fp32 %.2f MB), calibrated on %d images", name,
                len(model_bytes) / 1e6, len(fp32.model_bytes) / 1e6, len(images))
    return fp32.with_graph(model_bytes, precision="int8", quantization=quantization)


def quantize_int8(fp32: OnnxModel, calibration_images: np.ndarray,
                  config: str = DEFAULT_INT8_CONFIG) -> OnnxModel:
    """Static int8 of an fp32 export with one named configuration of ``INT8_CONFIGS``
    (default: QDQ, per-channel int8 weights, uint8 activations, MinMax)."""
    if config not in INT8_CONFIGS:
        raise ValueError(f"int8 configuration {config!r}: choose among {list(INT8_CONFIGS)}")
    return quantize_config(fp32, prepare_for_quantization(fp32), calibration_images,
                           INT8_CONFIGS[config], config)
