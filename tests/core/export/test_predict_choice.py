"""``predict.model: auto`` at the node: the evaluation's pick among the exported models."""

from __future__ import annotations

from PIL import Image

from ft_pipelines.params import PredictParams
from ft_pipelines.pipelines.predict.nodes import predict_images


def _row(top1: float, throughput: float, recommended: bool = True) -> dict:
    row = {"top1": top1, "throughput": throughput, "throughput_batch": 64, "latency_ms": 1.0}
    if not recommended:
        row.update(recommended=False, not_recommended_reason="test")
    return row


def _predict(tiny_onnx, folder, evaluation_metrics, export_report):
    params = PredictParams(path=str(folder), threads=1)
    return predict_images(tiny_onnx, tiny_onnx, tiny_onnx, export_report, params,
                          evaluation_metrics)


def test_auto_labels_with_the_evaluations_exported_pick(tiny_onnx, tmp_path):
    Image.new("RGB", (10, 10)).save(tmp_path / "a.png")
    export_report = {"recommendation": {"model": "pruned_int8"}}
    metrics = {"finetuned_onnx": _row(0.97, 900), "pruned_onnx": _row(0.98, 1600),
               "pruned_int8": _row(0.98, 1400),
               # a PyTorch row can be the report's fastest; predict only runs exported files
               "pruned": _row(0.98, 5000)}
    table = _predict(tiny_onnx, tmp_path, metrics, export_report)
    assert table["model"].iloc[0].startswith("pruned_onnx@")
    # no evaluation saved yet: the export report decides
    table = _predict(tiny_onnx, tmp_path, None, export_report)
    assert table["model"].iloc[0].startswith("pruned_int8@")
