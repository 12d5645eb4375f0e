"""What the export stage concludes: is the int8 model good enough, and which file to ship.

``recommendation`` in the export report is what ``predict.model: auto`` follows until an
evaluation exists; after that the evaluation report's "which model to ship" decides
(``resolve_model_choice``), because it compares every exported row's accuracy and speed.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from ft_pipelines.core.evaluation import ship_metric, ship_recommendation
from ft_pipelines.core.export.kinds import EXPORT_KINDS, always_exported, kinds_by_preference
from ft_pipelines.core.export.verify import compare_logits, top1

logger = logging.getLogger(__name__)


def assess_int8(fp32_logits: np.ndarray, int8_logits: np.ndarray, labels: np.ndarray,
                max_drop_points: float) -> dict[str, Any]:
    """int8 vs fp32 on the same images: top-1 of both, the drop in points, agreement, and
    ``recommended`` (false, with the reason, when the drop exceeds ``max_drop_points``)."""
    if max_drop_points < 0:
        raise ValueError(f"export.max_int8_drop={max_drop_points}: give points of top-1, >= 0")
    fp32, int8 = top1(fp32_logits, labels), top1(int8_logits, labels)
    # from counts of correct images: 100 * (1.0 - 0.99) is 1.0000000000000009, not 1
    correct = [int((logits.argmax(axis=1) == labels).sum()) for logits in (fp32_logits,
                                                                            int8_logits)]
    drop = 100.0 * (correct[0] - correct[1]) / len(labels)
    recommended = drop <= max_drop_points
    reason = (f"test top-1 {100 * int8:.2f}% vs fp32 {100 * fp32:.2f}% ({-drop:+.2f} points), "
              f"{'within' if recommended else 'beyond'} export.max_int8_drop={max_drop_points} "
              "points")
    agreement = compare_logits(fp32_logits, int8_logits)
    return {"test_top1": int8, "fp32_test_top1": fp32, "drop_points": drop,
            "top1_agreement_with_fp32": agreement["top1_agreement"],
            "max_abs_logit_diff_vs_fp32": agreement["max_abs_logit_diff"],
            "max_drop_points": float(max_drop_points), "recommended": recommended,
            "reason": reason}


def recommend(checks: dict[str, dict[str, Any]]) -> dict[str, str]:
    """The most preferred exported kind (``ExportKind.preference``: int8, then the fp32 pruned
    model) that was made and whose checks do not reject it, with why the ones before it lost."""
    passed_over = []
    for kind in kinds_by_preference():
        check = checks.get(kind.name) or {"skipped": "not exported"}
        if "skipped" in check:
            passed_over.append(f"no {kind.name} model ({check['skipped']})")
        elif check.get("recommended") is False:
            passed_over.append(f"{kind.name} not recommended: {check['reason']}")
        else:
            reason = f"{kind.name}: {check.get('reason') or 'its export checks passed'}"
            return {"model": kind.name, "reason": "; ".join([*passed_over, reason])}
    return {"model": always_exported(), "reason": "; ".join(passed_over)}


def resolve_model_choice(choice: str, recommendation: dict[str, Any] | None,
                         evaluated: dict[str, Any] | None = None) -> str:
    """``predict.model`` -> the exported model's dataset name.

    ``auto`` follows ``evaluated`` (the evaluation report's "which model to ship", measured on
    the test split with every row's speed) when there is one, else ``recommendation`` (the
    export report's int8 check), else the fp32 pruned model. An evaluation that ships none of
    the models is an error: nothing is labelled with a model the report rejected."""
    if choice != "auto":
        EXPORT_KINDS.entry(choice)
        return choice
    if evaluated is not None and evaluated.get("model") is None:
        raise ValueError(f"predict.model=auto: the evaluation report ships none of the models "
                         f"({evaluated.get('reason', 'all flagged not recommended')}); read "
                         "its report and set predict.model explicitly if you still want one")
    source = evaluated if evaluated is not None else (recommendation or {})
    model = source.get("model") or always_exported()
    if model not in EXPORT_KINDS:
        raise ValueError(f"The recommendation names {model!r}, which is not an exported model "
                         f"({', '.join(EXPORT_KINDS)}); set predict.model explicitly")
    return model


def evaluation_matches_export(evaluation: dict[str, Any], report: dict[str, Any]) -> bool:
    """True when ``evaluation`` measured exactly the exported files ``report`` describes (by
    sha256); false after an export that ran later, or for an evaluation without hashes."""
    described = {name: (check or {}).get("sha256")
                 for name, check in (report.get("models") or {}).items()}
    described = {name: sha for name, sha in described.items() if sha}
    measured = {name: (evaluation.get(name) or {}).get("sha256")
                for name in EXPORT_KINDS if name in evaluation}
    return bool(described) and described == measured


def evaluated_recommendation(evaluation: dict[str, Any] | None, report: dict[str, Any],
                             plan: dict[str, Any] | None = None) -> dict[str, Any] | None:
    """The evaluation's "which model to ship" among the exported rows (a PyTorch row may be
    its fastest, but only exported files can label images), ranked as the evaluation report
    ranks them (macro-F1 when ``plan`` found the training data imbalanced, else top-1); None
    when there is no evaluation or it measured other files than ``report`` describes (an
    export ran after it)."""
    if not evaluation:
        return None
    if not evaluation_matches_export(evaluation, report):
        logger.warning("The newest evaluation measured other exported files than the export "
                       "report describes (an export ran after it): predict.model=auto follows "
                       "the export report; run `kedro run --pipelines=evaluation` to update it")
        return None
    metric, _ = ship_metric(plan or {})
    return ship_recommendation({name: row for name, row in evaluation.items()
                                if name in EXPORT_KINDS}, metric)


def provenance_warning(name: str, sha256: str, report: dict[str, Any]) -> str | None:
    """A warning when the loaded ``name`` is not the file ``report`` describes (e.g. one
    pinned with --load-versions next to a newer report), else None."""
    described = ((report.get("models") or {}).get(name) or {}).get("sha256")
    if described is None or described == sha256:
        return None
    return (f"{name} loaded here (sha256 {sha256[:12]}) is not the one the export report "
            f"describes (sha256 {described[:12]}): they come from different export runs, so "
            "the report's checks and recommendation are not about this file")
