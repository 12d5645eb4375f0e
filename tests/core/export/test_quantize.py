import collections

import numpy as np
import onnx
import pytest

from ft_pipelines.core.export.quantize import quantize_int8
from ft_pipelines.core.export.runtime import OnnxRunner
from tests.core.export.conftest import CLASSES, tiny_images


def test_int8_model_runs_with_the_right_shape_and_sidecar(tiny_onnx, tiny_data):
    calibration = tiny_images(count=20, seed=1).images.numpy()
    int8 = quantize_int8(tiny_onnx, calibration)
    ops = collections.Counter(n.op_type for n in onnx.load_from_string(int8.model_bytes).graph.node)
    assert ops["QuantizeLinear"] > 0 and ops["DequantizeLinear"] > 0  # QDQ format
    logits = OnnxRunner(int8).logits(tiny_data.images.numpy())
    assert logits.shape == (len(tiny_data), len(CLASSES)) and np.isfinite(logits).all()
    fp32_logits = OnnxRunner(tiny_onnx).logits(tiny_data.images.numpy())
    assert np.abs(logits - fp32_logits).max() < 0.5 * np.abs(fp32_logits).max()  # same function
    assert int8.precision == "int8" and int8.class_names == CLASSES
    assert int8.mean == tiny_onnx.mean and int8.std == tiny_onnx.std
    assert int8.sidecar["quantization"]["calibration_images"] == 20
    assert int8.sidecar["quantization"]["fp32_sha256"] == tiny_onnx.sha256
    assert int8.sha256 != tiny_onnx.sha256


def test_calibration_needs_uint8_images(tiny_onnx):
    with pytest.raises(ValueError, match="export.calibration_images"):
        quantize_int8(tiny_onnx, np.zeros((0, 3, 32, 32), dtype=np.uint8))
    with pytest.raises(ValueError, match="uint8"):
        quantize_int8(tiny_onnx, np.zeros((2, 3, 32, 32), dtype=np.float32))
