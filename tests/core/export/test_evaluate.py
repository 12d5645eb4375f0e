import numpy as np

from ft_pipelines.core import evaluation as m
from ft_pipelines.core.evaluation.report import TABLE_COLUMNS
from ft_pipelines.core.export.evaluate import evaluate_onnx
from ft_pipelines.core.export.quantize import quantize_int8
from tests.core.export.conftest import CLASSES, MEAN, STD

PARAMS = {"latency_runs": 3, "latency_warmup": 1, "throughput_batch": 8}


def test_same_metrics_as_the_pytorch_path(tiny_model, tiny_onnx, tiny_data):
    scores = evaluate_onnx(tiny_onnx, tiny_data, CLASSES, PARAMS, threads=1)
    probs = m.predict(tiny_model, tiny_data.images, MEAN, STD)
    expected = m.classification_metrics(probs, tiny_data.labels.numpy(), CLASSES)
    for key in ("n_samples", "top1", "top5", "macro_f1", "confusion"):
        assert scores[key] == expected[key], key
    assert np.isclose(scores["ece"], expected["ece"], atol=1e-5)
    # every measured column of the comparison table (the ship flags are set by the evaluation)
    assert set(TABLE_COLUMNS) - {"recommended", "not_recommended_reason"} <= set(scores)
    assert scores["size_bytes"] == len(tiny_onnx.model_bytes)
    assert scores["latency_ms"] > 0 and scores["throughput"] > 0
    assert scores["throughput_batch"] == 8 and scores["threads"] == 1


def test_int8_evaluates_too(tiny_onnx, tiny_data):
    int8 = quantize_int8(tiny_onnx, tiny_data.images.numpy())
    scores = evaluate_onnx(int8, tiny_data, CLASSES, PARAMS, threads=1)
    assert 0 <= scores["top1"] <= 1 and scores["size_bytes"] == len(int8.model_bytes)
