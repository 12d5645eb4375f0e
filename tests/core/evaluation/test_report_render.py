"""The Markdown report on a fixed input: every model gets a row with its accuracy as a
percentage, the strategy's reasons are listed, and the pruning trade-off is stated. Only stable
facts are asserted (the wording may change)."""

from __future__ import annotations

from ft_pipelines.core.evaluation import render_report

PLAN = {"strategy": "partial_finetune", "decided_by": "decision matrix",
        "reasons": ["small target data set", "similar domain"], "regularizer": "l2_sp",
        "trainable_blocks": 3, "epochs": 5}
PROFILE = {"source": "sklearn_digits", "num_images": 300, "num_classes": 10}
PRUNING = {"importance": "taylor_gate", "target": "macs", "ratio": 0.35}


def _result(top1: float, macs: float, params: int, latency: float) -> dict:
    return {"top1": top1, "top5": 0.999, "macro_f1": 0.9512, "ece": 0.0321, "params": params,
            "macs": macs, "size_bytes": params * 4, "latency_ms": latency, "throughput": 812.4,
            "throughput_batch": 16, "n_samples": 272}


RESULTS = {"linear_probe": _result(0.8125, 4.0e8, 3_400_000, 9.5),
           "finetuned": _result(0.9853, 4.0e8, 3_400_000, 9.5),
           "pruned": _result(0.9706, 2.6e8, 2_100_000, 6.25)}


def test_every_model_has_a_row_with_percentages():
    report = render_report(PLAN, RESULTS, PRUNING, PROFILE)
    rows = {line.split("|")[1].strip(): line for line in report.splitlines()
            if line.startswith("| ") and not line.startswith("| model")}
    assert set(rows) == set(RESULTS)
    assert "81.25%" in rows["linear_probe"]
    assert "98.53%" in rows["finetuned"]
    assert "97.06%" in rows["pruned"]
    assert "3,400,000" in rows["finetuned"] and "2,100,000" in rows["pruned"]


def test_strategy_reasons_and_pruning_trade_off_are_stated():
    report = render_report(PLAN, RESULTS, PRUNING, PROFILE)
    assert report.startswith("# ")
    assert "partial_finetune" in report
    for reason in PLAN["reasons"]:
        assert reason in report
    assert "35.0%" in report  # MACs: 1 - 2.6/4.0 fewer
    assert "98.53% -> 97.06%" in report
    assert "taylor_gate" in report


def test_without_a_pruned_model_there_is_no_trade_off_section():
    results = {k: v for k, v in RESULTS.items() if k != "pruned"}
    report = render_report(PLAN, results, PRUNING, PROFILE)
    assert "pruned" not in report and "taylor_gate" not in report


def test_ece_before_and_after_the_temperature_and_within_round_ratios():
    finetuned = {**RESULTS["finetuned"], "ece_uncalibrated": 0.0612, "ece": 0.0201,
                 "temperature": 1.8, "latency_rounds_ms": [10.0, 20.0, 10.0, 10.0, 10.0],
                 "throughput_rounds": [800.0] * 5, "latency_spread_ms": 0.5}
    pruned = {**RESULTS["pruned"], "latency_rounds_ms": [5.0, 10.0, 5.0, 5.0, 5.0],
              "throughput_rounds": [1600.0] * 5}
    report = render_report(PLAN, {**RESULTS, "finetuned": finetuned, "pruned": pruned},
                           PRUNING, PROFILE)
    assert "## Calibrated probabilities" in report
    assert "| finetuned | 1.800 | 0.0612 | 0.0201 |" in report
    assert "(0.50x); throughput" in report and "(2.00x)." in report  # per-round ratios
    assert "9.50 ± 0.50" in report


def test_the_int8_trials_are_listed_with_the_verdict():
    timing = {"latency_ms": 1.2, "latency_spread_ms": 0.1, "throughput": 900.0}
    trial = {"config": "qdq_u8s8_channel_minmax", "format": "QDQ", "per_channel": True,
             "activations": "uint8", "calibration_method": "minmax", "keep_fp32": [],
             **timing, "latency_ratio": 1.1, "throughput_ratio": 0.9, "val_top1": 0.98,
             "top1": 0.97, "chosen": True}
    export_report = {"int8_trials": [trial, {"config": "qop_s8s8", "error": "Fail: no"}],
                     "int8_search": {"fp32": {**timing, "val_top1": 0.99, "top1": 0.98},
                                     "pays": False, "meets_target": False,
                                     "reason": "no int8 configuration is faster than fp32"}}
    report = render_report(PLAN, RESULTS, PRUNING, PROFILE, export_report)
    assert "## int8: which configuration pays" in report
    assert "| qdq_u8s8_channel_minmax | QDQ | channel | U8S8 | minmax | - | 1.20 ± 0.10 (1.10x)" \
        in report
    assert "int8 does not pay: fp32 is shipped" in report and "failed: Fail: no" in report


def test_a_model_that_kept_t_1_says_why():
    """The evaluation's reason for a PyTorch model, the export's for an ONNX file."""
    finetuned = {**RESULTS["finetuned"], "ece_uncalibrated": 0.0108, "temperature": 1.0,
                 "temperature_not_applied": "T=0.84 raises the validation ECE"}
    onnx = {**RESULTS["finetuned"], "ece_uncalibrated": 0.0108, "temperature": 1.0}
    export_report = {"models": {"finetuned_onnx": {"calibration": {
        "temperature": 1.0, "not_applied": "T=0.83 raises the validation ECE"}}}}
    report = render_report(PLAN, {**RESULTS, "finetuned": finetuned, "finetuned_onnx": onnx},
                           PRUNING, PROFILE, export_report)
    assert "- `finetuned`: T = 1 kept: T=0.84 raises the validation ECE." in report
    assert "- `finetuned_onnx`: T = 1 kept: T=0.83 raises the validation ECE." in report
