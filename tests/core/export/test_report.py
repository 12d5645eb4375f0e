import numpy as np
import pytest

from ft_pipelines.core.evaluation import ship_recommendation
from ft_pipelines.core.export.report import (
    assess_int8,
    provenance_warning,
    recommend,
    resolve_model_choice,
)
from tests.core.export.conftest import evaluation_row as row

LABELS = np.arange(100) % 4


def one_hot_logits(predictions: np.ndarray) -> np.ndarray:
    logits = np.zeros((len(predictions), 4), dtype=np.float32)
    logits[np.arange(len(predictions)), predictions] = 1.0
    return logits


def test_int8_within_the_allowed_drop_is_recommended():
    fp32 = one_hot_logits(LABELS)
    int8 = one_hot_logits(np.where(np.arange(100) == 0, (LABELS + 1) % 4, LABELS))  # 1 wrong
    result = assess_int8(fp32, int8, LABELS, max_drop_points=1.0)
    assert result["drop_points"] == pytest.approx(1.0) and result["recommended"]
    assert result["top1_agreement_with_fp32"] == pytest.approx(0.99)
    assert recommend({"pruned_int8": result})["model"] == "pruned_int8"


def test_int8_beyond_the_allowed_drop_is_flagged_with_the_reason():
    fp32 = one_hot_logits(LABELS)
    int8 = one_hot_logits(np.where(np.arange(100) < 3, (LABELS + 1) % 4, LABELS))  # 3 wrong
    result = assess_int8(fp32, int8, LABELS, max_drop_points=1.0)
    assert not result["recommended"]
    assert "-3.00 points" in result["reason"] and "export.max_int8_drop=1.0" in result["reason"]
    choice = recommend({"pruned_int8": result, "pruned_onnx": {}, "finetuned_onnx": {}})
    assert choice["model"] == "pruned_onnx" and "pruned_int8 not recommended" in choice["reason"]
    assert recommend({"pruned_int8": {"skipped": "export.quantize is null"}, "pruned_onnx": {}}
                     )["model"] == "pruned_onnx"


def test_model_choice():
    assert resolve_model_choice("auto", {"model": "pruned_int8"}) == "pruned_int8"
    assert resolve_model_choice("auto", None) == "pruned_onnx"
    assert resolve_model_choice("finetuned_onnx", {"model": "pruned_int8"}) == "finetuned_onnx"
    with pytest.raises(ValueError, match="Unknown predict.model 'best'; valid: finetuned_onnx"):
        resolve_model_choice("best", None)
    with pytest.raises(ValueError, match="set predict.model explicitly"):
        resolve_model_choice("auto", {"model": "linear_probe"})


def test_auto_follows_the_evaluation_over_the_export_report():
    # int8 is slower than fp32 here (as on the demo's CPU): the evaluation ships pruned_onnx
    results = {"finetuned_onnx": row(0.97, 900), "pruned_onnx": row(0.98, 1600),
               "pruned_int8": row(0.98, 1400), "finetuned": row(0.97, 400, False)}
    evaluated = ship_recommendation(results)
    assert resolve_model_choice("auto", {"model": "pruned_int8"}, evaluated) == "pruned_onnx"
    # a collapsed pruned model is flagged: auto falls back to the fine-tuned export
    results["pruned_onnx"] = row(0.20, 1600, False)
    results["pruned_int8"] = row(0.20, 1400, False)
    evaluated = ship_recommendation(results)
    assert resolve_model_choice("auto", {"model": "pruned_int8"}, evaluated) == "finetuned_onnx"
    # an explicit choice is the user's
    assert resolve_model_choice("pruned_int8", None, evaluated) == "pruned_int8"


def test_auto_refuses_when_the_evaluation_ships_nothing():
    evaluated = ship_recommendation({"pruned_onnx": row(0.2, 1600, False)})
    with pytest.raises(ValueError, match="ships none of the models"):
        resolve_model_choice("auto", {"model": "pruned_onnx"}, evaluated)


def test_provenance_warning_names_both_hashes():
    report = {"models": {"pruned_int8": {"sha256": "a" * 64}}}
    assert provenance_warning("pruned_int8", "a" * 64, report) is None
    assert provenance_warning("pruned_onnx", "b" * 64, report) is None  # nothing to compare
    warning = provenance_warning("pruned_int8", "b" * 64, report)
    assert "bbbbbbbbbbbb" in warning and "aaaaaaaaaaaa" in warning
