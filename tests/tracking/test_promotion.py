"""The promotion gates (pure): export checks, the report's choice, test top-1 against the
champion on the same data, other data only with force."""

from __future__ import annotations

import pytest

from ft_pipelines.tracking.promotion import (
    Candidate,
    decide,
    export_check_failure,
    report_section,
)

CANDIDATE = Candidate(model="pruned_int8", sha256="ab" * 32, test_top1=0.80, latency_ms=1.5,
                      data_fingerprint="data1", class_names=["cat", "dog"],
                      lineage_version="2026-01-01T00.00.00.000Z")


def champion(top1: float, data: str = "data1") -> dict[str, str]:
    return {"version": "3", "test_top1": repr(top1), "data_fingerprint": data}


def gate(champion_tags, **options):
    settings = {"max_drop": 0.5, "force": False, "export_failure": None, "ships": True,
                **options}
    return decide(CANDIDATE, champion_tags, **settings)


def test_the_first_version_becomes_champion():
    assert gate(None) == (True, "first version: no champion yet")


@pytest.mark.parametrize(("best", "promoted"), [(0.80, True), (0.805, True), (0.7, True),
                                                (0.8051, False), (0.9, False)])
def test_at_most_max_drop_points_below_the_champion(best, promoted):
    promote, reason = gate(champion(best))
    assert promote is promoted
    assert ("more than mlflow.promotion.max_drop=0.5" in reason) is not promoted
    assert f"{100 * best:.2f}%" in reason and "version 3" in reason


def test_other_data_needs_force():
    promote, reason = gate(champion(0.1, data="data0"))
    assert not promote and "mlflow.promotion.force=true" in reason and "data0" in reason
    promote, reason = gate(champion(0.99, data="data0"), force=True)
    assert promote and "promoted by mlflow.promotion.force=true" in reason


def test_failed_export_checks_or_a_model_the_report_does_not_ship_are_never_promoted():
    assert gate(None, export_failure="int8 not recommended") == (
        False, "export checks: int8 not recommended")
    assert gate(None, ships=False)[0] is False


def test_export_checks_must_describe_this_very_file():
    sha = CANDIDATE.sha256
    report = {"models": {
        "pruned_onnx": {"sha256": sha, "verification": {"n_images": 30}},
        "pruned_int8": {"sha256": sha, "quantization": {}, "recommended": False,
                        "reason": "drop 3 points"},
        "finetuned_onnx": {"sha256": sha}}}
    assert export_check_failure(report, "pruned_onnx", sha) is None
    assert "drop 3 points" in export_check_failure(report, "pruned_int8", sha)
    assert "no verification" in export_check_failure(report, "finetuned_onnx", sha)
    assert "does not describe" in export_check_failure(report, "pruned_onnx", "cd" * 32)


def test_the_report_section_says_why_not():
    record = {"registered_model": "m", "version": "4", "alias": "champion", "promoted": False,
              "reason": "too low", "run_id": "r", "model": "pruned_int8",
              "champion_version": "3"}
    section = report_section(record)
    assert "## Model registry" in section
    assert "Not promoted: too low. `champion` stays at version 3." in section
    assert "Not registered: no model." in report_section({"version": None,
                                                          "reason": "no model"})
