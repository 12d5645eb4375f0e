"""``predict.model: auto`` at the node: the evaluation's pick among the exported models."""

from __future__ import annotations

from PIL import Image

from ft_pipelines.core.export import EXPORT_KINDS as EXPORTED
from ft_pipelines.params import PredictParams
from ft_pipelines.pipelines.predict.nodes import predict_images
from tests.core.export.conftest import evaluation_row as row


def _predict(tiny_onnx, folder, evaluation_metrics, export_report):
    params = PredictParams(path=str(folder), threads=1)
    return predict_images(export_report, params, evaluation_metrics,
                          **dict.fromkeys(EXPORTED, tiny_onnx))


def test_auto_labels_with_the_evaluations_exported_pick(tiny_onnx, tmp_path):
    Image.new("RGB", (10, 10)).save(tmp_path / "a.png")
    sha = tiny_onnx.sha256
    export_report = {"recommendation": {"model": "pruned_int8"},
                     "models": {name: {"sha256": sha} for name in EXPORTED}}
    metrics = {"finetuned_onnx": row(0.97, 900), "pruned_onnx": row(0.98, 1600),
               "pruned_int8": row(0.98, 1400),
               # a PyTorch row can be the report's fastest; predict only runs exported files
               "pruned": row(0.98, 5000)}
    for name in EXPORTED:
        metrics[name]["sha256"] = sha
    table = _predict(tiny_onnx, tmp_path, metrics, export_report)
    assert table["model"].iloc[0].startswith("pruned_onnx@")
    # no evaluation saved yet: the export report decides
    table = _predict(tiny_onnx, tmp_path, None, export_report)
    assert table["model"].iloc[0].startswith("pruned_int8@")


def test_an_evaluation_of_other_files_is_not_followed(tiny_onnx, tmp_path, caplog):
    """An export without int8 after the evaluation: the evaluation's int8 pick is stale."""
    Image.new("RGB", (10, 10)).save(tmp_path / "a.png")
    sha = tiny_onnx.sha256
    export_report = {"recommendation": {"model": "pruned_onnx"},
                     "models": {"finetuned_onnx": {"sha256": sha}, "pruned_onnx": {"sha256": sha},
                                "pruned_int8": {"skipped": "export.quantize: null"}}}
    metrics = {"finetuned_onnx": row(0.97, 900), "pruned_onnx": row(0.98, 1600),
               "pruned_int8": row(0.98, 9000)}
    for name in EXPORTED:
        metrics[name]["sha256"] = sha
    with caplog.at_level("WARNING"):
        table = _predict(tiny_onnx, tmp_path, metrics, export_report)
    assert table["model"].iloc[0].startswith("pruned_onnx@")
    assert "measured other exported files" in caplog.text


def test_auto_ranks_by_macro_f1_when_the_plan_found_imbalance(tiny_onnx, tmp_path):
    """As the evaluation report does: on imbalanced data the fastest within 1 point of the best
    macro-F1, not of the best top-1."""
    Image.new("RGB", (10, 10)).save(tmp_path / "a.png")
    sha = tiny_onnx.sha256
    export_report = {"recommendation": {"model": "pruned_int8"},
                     "models": {name: {"sha256": sha} for name in EXPORTED}}
    metrics = {"finetuned_onnx": row(0.97, 900), "pruned_onnx": row(0.97, 1600),
               "pruned_int8": row(0.97, 2000)}
    for name, macro_f1 in (("finetuned_onnx", 0.95), ("pruned_onnx", 0.92),
                           ("pruned_int8", 0.90)):
        metrics[name].update(sha256=sha, macro_f1=macro_f1)
    imbalanced = {"recipe": {"class_balance": {"imbalanced": True, "ratio": 11.7,
                                               "threshold": 3.0}}}
    params = PredictParams(path=str(tmp_path), threads=1)
    models = dict.fromkeys(EXPORTED, tiny_onnx)
    chosen = predict_images(export_report, params, metrics, finetune_plan=imbalanced, **models)
    assert chosen["model"].iloc[0].startswith("finetuned_onnx@")  # int8's macro-F1 is 5 below
    balanced = predict_images(export_report, params, metrics, finetune_plan={}, **models)
    assert balanced["model"].iloc[0].startswith("pruned_int8@")  # same top-1: the fastest
