"""``export``: the ONNX files, their int8 search and its timer. The schema lives with the
export code (core/export/kinds.py builds each exported model from it); ``ft_pipelines.params``
composes it into the session's ``Parameters``."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from ft_pipelines.core.evaluation.settings import TimingParams
from ft_pipelines.core.utils.schema import Count, Fraction, Seed

# The names of core.export.quantize.INT8_CONFIGS (a test checks they match).
Int8ConfigName = Literal[
    "qdq_u8s8_channel_minmax", "qdq_u8s8_tensor_minmax", "qdq_s8s8_channel_minmax",
    "qop_u8s8_channel_minmax",
    "qdq_u8s8_channel_minmax_fp32_first_last", "qdq_u8s8_channel_minmax_fp32_depthwise",
    "qdq_u8s8_channel_entropy", "qdq_u8s8_channel_percentile"]


class ExportParams(TimingParams):
    opset: int = Field(default=17, ge=17)   # ONNX opset of the exported graphs
    max_disagreement: Fraction = 0.005      # test images whose ONNX top-1 may differ from PyTorch
    quantize: Literal["int8"] | None = "int8"   # null: no int8 model
    calibration_images: Count = 128         # training images that calibrate int8 activations
    histogram_calibration_images: Count = 32  # ... for the entropy / percentile calibrations
    int8_configs: list[Int8ConfigName] | None = None  # configurations tried; null: all
    max_int8_drop: float = Field(default=1.0, ge=0)  # top-1 points int8 may lose vs fp32
    # the timer of the int8 trials (rounds alternate fp32 and the trials): TimingParams'
    # defaults, the evaluation's, so the export's int8 verdict and the evaluation's rows are
    # timed the same way (tests/core/export/test_timing_agreement.py)
    threads: Count | None = None            # onnxruntime intra-op threads; null: PyTorch's
    seed: Seed = 0                          # which calibration images
