"""Whether a run's model to ship becomes the registered model's champion, and the words the
report and the log give for it. Pure functions, no MLflow calls: ``registry`` asks the store,
the hook sends what these return.

Gates, all required: the export checks passed for that file, the evaluation report ships it,
and its test top-1 is at most ``max_drop`` points below the champion's, measured on the same
data (same data fingerprint). A champion trained on other data is replaced only with
``force``: the two test top-1 are not comparable.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

CLASS_NAMES_TAG_LIMIT = 5000  # MLflow caps a tag value at 8000 characters


@dataclass(frozen=True)
class Candidate:
    """What a registered version is judged on (and tagged with)."""

    model: str                  # the exported kind (core/export/kinds.py): pruned_int8, ...
    sha256: str
    test_top1: float            # fraction, from the evaluation of this very file
    latency_ms: float | None
    data_fingerprint: str
    class_names: list[str]
    lineage_version: str        # the run's save version: lineage.json/<version>

    def tags(self) -> dict[str, str]:
        return {"shipped_model": self.model, "sha256": self.sha256,
                "test_top1": repr(self.test_top1),
                "latency_ms": "" if self.latency_ms is None else repr(self.latency_ms),
                "data_fingerprint": self.data_fingerprint,
                "class_names": json.dumps(self.class_names)[:CLASS_NAMES_TAG_LIMIT],
                "lineage_version": self.lineage_version}


def export_check_failure(export_report: dict[str, Any], model: str, sha256: str
                         ) -> str | None:
    """Why the export checks do not vouch for this file, or None when they passed: the report
    must describe this very file (sha256), fp32 files must carry their verification against
    PyTorch (the export node raises before saving one that fails it), and a kind whose checks
    judge it (int8: its drop within ``export.max_int8_drop``) must be recommended."""
    check = (export_report.get("models") or {}).get(model) or {}
    if check.get("sha256") != sha256:
        return (f"the export report does not describe this {model} file (sha256 "
                f"{str(check.get('sha256'))[:12]} vs {sha256[:12]})")
    if "recommended" in check:
        if check["recommended"] is not True:
            return f"{model} not recommended by the export checks: {check.get('reason')}"
    elif not check.get("verification"):
        return f"{model} has no verification against PyTorch in the export report"
    return None


def decide(candidate: Candidate, champion: dict[str, str] | None, *, max_drop: float,
           force: bool, export_failure: str | None, ships: bool) -> tuple[bool, str]:
    """(promote?, why) for ``candidate`` against the tags of the current champion version
    (None: there is none)."""
    if export_failure:
        return False, f"export checks: {export_failure}"
    if not ships:
        return False, "the evaluation report does not ship this model"
    if champion is None:
        return True, "first version: no champion yet"
    version = champion.get("version", "?")
    if champion.get("data_fingerprint") != candidate.data_fingerprint:
        if force:
            return True, (f"trained on other data than the champion (version {version}, data "
                          f"{champion.get('data_fingerprint')}); promoted by "
                          "mlflow.promotion.force=true")
        return False, (f"trained on other data (fingerprint {candidate.data_fingerprint}) than "
                       f"the champion (version {version}, {champion.get('data_fingerprint')}): "
                       "test top-1 not comparable; set mlflow.promotion.force=true to promote")
    try:
        best = float(champion["test_top1"])
    except (KeyError, ValueError):
        return True, f"the champion (version {version}) has no test_top1 tag to compare with"
    drop = 100.0 * (best - candidate.test_top1)
    words = (f"test top-1 {100 * candidate.test_top1:.2f}% vs the champion's (version "
             f"{version}) {100 * best:.2f}%: {0.0 - drop:+.2f} points")
    if drop > max_drop + 1e-9:  # from counts of images: 1/3 point is 0.3333...
        return False, f"{words}, more than mlflow.promotion.max_drop={max_drop} below it"
    return True, f"{words}, within mlflow.promotion.max_drop={max_drop}"


def report_section(record: dict[str, Any]) -> str:
    """The report's "Model registry" section for a promotion record."""
    lines = ["", "## Model registry", ""]
    if record.get("version") is None:
        lines.append(f"Not registered: {record['reason']}.")
        return "\n".join(lines) + "\n"
    name, version, alias = record["registered_model"], record["version"], record["alias"]
    lines.append(f"`{record['model']}` is version {version} of `{name}` (MLflow pyfunc model, "
                 f"run {record['run_id']}).")
    if record["promoted"]:
        lines.append(f"Promoted: `{alias}` now points at version {version} ({record['reason']}).")
    else:
        kept = record.get("champion_version")
        lines.append(f"Not promoted: {record['reason']}. `{alias}` stays at "
                     f"{'version ' + str(kept) if kept else 'no version'}.")
    return "\n".join(lines) + "\n"
