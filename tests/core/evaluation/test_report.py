"""The comparison is generic over rows; the report ends with which model to ship and why."""

from __future__ import annotations

from ft_pipelines.core.evaluation import (
    comparison_table,
    flag_rejected_pruning,
    mark_not_recommended,
    render_report,
    ship_recommendation,
)


def row(top1: float, throughput: float | None = None, latency: float | None = None,
        **extra) -> dict:
    return {"top1": top1, "top5": None, "macro_f1": top1, "ece": 0.01, "n_samples": 100,
            "params": 1000, "macs": 2e6, "size_bytes": 4000, "latency_ms": latency,
            "throughput": throughput, "throughput_batch": 64 if throughput else None, **extra}


def results() -> dict:
    rows = {"linear_probe": row(0.90, 100, 9.0), "finetuned": row(0.980, 100, 10.0),
            "pruned": row(0.975, 140, 7.0), "pruned_int8": row(0.978, 300, 3.0),
            "pixels_svc": row(0.985, 5000, 0.2)}
    mark_not_recommended(rows, "pixels_svc", "reference for comparison")
    mark_not_recommended(rows, "pruned_int8", "int8 lost 1.5 points")
    return rows


def test_fastest_within_one_point_among_recommended_rows() -> None:
    ship = ship_recommendation(results())
    assert ship["model"] == "pruned"
    assert ship["speed_metric"] == "throughput at batch 64"
    assert ship["best_top1_model"] == "finetuned"  # flagged rows do not set the bar either
    assert ship["within_1_point"] == ["finetuned", "pruned"]
    assert set(ship["excluded"]) == {"pixels_svc", "pruned_int8"}


def test_latency_decides_when_a_candidate_lacks_throughput() -> None:
    rows = results()
    rows["finetuned_onnx"] = row(0.979, latency=4.0)
    ship = ship_recommendation(rows)
    assert ship["speed_metric"] == "latency at batch 1" and ship["model"] == "finetuned_onnx"


def test_a_model_more_than_one_point_worse_is_not_shipped_however_fast() -> None:
    rows = results()
    rows["pruned"] = row(0.96, 1000, 1.0)
    assert ship_recommendation(rows)["model"] == "finetuned"


def test_nothing_to_ship_when_every_row_is_flagged() -> None:
    rows = {"a": row(0.9, 10, 1.0)}
    mark_not_recommended(rows, "a", "broken")
    ship = ship_recommendation(rows)
    assert ship["model"] is None and ship["excluded"] == {"a": "broken"}


def test_report_is_generic_and_ends_with_the_recommendation() -> None:
    rows = results()
    rows["finetuned_onnx"] = {"top1": 0.97, "n_samples": 100}  # no cost measured at all
    rows["pixels_svc"]["top1"] = 0.99
    plan = {"strategy": "partial_finetune", "decided_by": "matrix", "reasons": ["small"],
            "regularizer": "l2sp", "trainable_blocks": 3, "epochs": 5}
    pruning = {"importance": "taylor_gate", "target": "macs", "ratio": 0.35,
               "max_layer_ratio": 0.75, "round_to": 8, "feature_floor": 32, "max_val_drop": 2.0,
               "val_top1_finetuned": 0.99, "accepted": False, "val_drop_points": 3.0,
               "attempts": [{"attempt": 1, "ratio": 0.35, "macs_ratio": 0.65, "val_top1": 0.9,
                             "val_drop_points": 9.0, "kept": False},
                            {"attempt": 2, "ratio": 0.175, "macs_ratio": 0.8, "val_top1": 0.96,
                             "val_drop_points": 3.0, "kept": True}]}
    profile = {"source": "digits", "num_images": 1797, "num_classes": 10}
    report = render_report(plan, rows, pruning, profile)
    assert "| finetuned_onnx | 97.00% | n/a |" in report
    assert "| 2 | 0.175 | 0.80x | 96.00% | 3.00 | yes |" in report
    assert "do not ship it" in report
    assert "fine-tuning did NOT clearly beat the cheap alternatives" not in report
    assert "fine-tuning did NOT beat the cheap alternatives" in report  # pixels_svc 99%
    ship_section = report.split("## Which model to ship")[1]
    assert "**`pruned`**" in ship_section and "throughput at batch 64" in ship_section
    assert "`pruned_int8`: int8 lost 1.5 points" in ship_section
    assert "Caution: the reference `pixels_svc` reaches 99.00%, 1.50 points more" in ship_section
    assert "| pixels_svc | 99.00% | n/a | 0.9850 | 0.0100 | 1,000 | 2.0 |" in report
    table = comparison_table(rows)
    assert table.loc[table.model == "pixels_svc", "recommended"].item() is False
    assert table.loc[table.model == "finetuned_onnx", "latency_ms"].isna().item()


def test_rejected_pruning_flags_the_pruned_rows_only_when_rejected() -> None:
    rows = results()
    flag_rejected_pruning(rows, {"accepted": True})
    assert ship_recommendation(rows)["model"] == "pruned"
    flag_rejected_pruning(rows, {"accepted": False, "val_drop_points": 80.0, "max_val_drop": 2.0,
                                 "attempts": [{}, {}, {}]}, rows=("pruned", "pruned_onnx"))
    assert rows["pruned"]["recommended"] is False
    assert "80.00 validation top-1 points" in rows["pruned"]["not_recommended_reason"]
    assert ship_recommendation(rows)["model"] == "finetuned"


IMBALANCED_PLAN = {"strategy": "head_only", "decided_by": "pilot", "reasons": ["small"],
                   "regularizer": "l2", "trainable_blocks": 0, "epochs": 5,
                   "recipe": {"class_balance": {"value": "weights", "source": "plan",
                                                "reason": "class_balance auto -> weights",
                                                "ratio": 10.0, "imbalanced": True,
                                                "threshold": 3.0},
                              "lr_find": {"value": True, "source": "user", "reason": "set"}}}
PROFILE = {"source": "folder", "num_images": 400, "num_classes": 2}


def per_class(recall_a: float, recall_b: float) -> dict:
    return {"a": {"recall": recall_a, "support": 90}, "b": {"recall": recall_b, "support": 10}}


def imbalanced_rows() -> dict:
    # finetuned: best top-1 by ignoring the small class; pruned: lower top-1, better macro-F1
    return {"finetuned": row(0.92, 100, 10.0, macro_f1=0.55, balanced_accuracy=0.56,
                             per_class=per_class(1.0, 0.1)),
            "pruned": row(0.90, 50, 12.0, macro_f1=0.80, balanced_accuracy=0.85,
                          per_class=per_class(0.9, 0.8)),
            "finetuned_onnx": {"top1": 0.91, "n_samples": 100}}  # no macro-F1 measured


def test_ship_decision_uses_macro_f1_when_the_training_data_is_imbalanced() -> None:
    rows = imbalanced_rows()
    assert ship_recommendation(rows)["model"] == "finetuned"  # top-1: the small class ignored
    ship = ship_recommendation(rows, "macro_f1")
    assert ship["model"] == "pruned" and ship["best_model"] == "pruned"
    assert ship["excluded"] == {"finetuned_onnx": "no test macro-F1 measured"}
    report = render_report(IMBALANCED_PLAN, rows, {}, PROFILE)
    ship_section = report.split("## Which model to ship")[1]
    assert "**`pruned`**" in ship_section and "Decided on test macro-F1" in ship_section
    assert "largest/smallest class 10.00 > 3" in ship_section


def test_imbalance_section_only_when_the_plan_says_imbalanced() -> None:
    report = render_report(IMBALANCED_PLAN, imbalanced_rows(), {}, PROFILE)
    section = report.split("## Class imbalance")[1].split("##")[0]
    assert "| finetuned | 92.00% | 56.00% | 55.00% |" in section
    assert "| b | 10 | 10.00% | 80.00% |" in section  # per-class recall: finetuned, shipped
    assert "lr_find_plot" in report  # the LR range test's curve is referenced
    balanced = {**IMBALANCED_PLAN, "recipe": {"class_balance": {
        **IMBALANCED_PLAN["recipe"]["class_balance"], "imbalanced": False}}}
    report = render_report(balanced, imbalanced_rows(), {}, PROFILE)
    assert "## Class imbalance" not in report and "lr_find_plot" not in report
    assert "**`finetuned`**" in report.split("## Which model to ship")[1]
