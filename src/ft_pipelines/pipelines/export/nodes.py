"""Thin nodes: one per exported model kind (core/export/kinds.py: export to ONNX and check it
against PyTorch, quantise to int8, ...), then the report of all of them.

A model whose ONNX export disagrees with PyTorch makes its node raise, so nothing is saved.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import onnxruntime as ort
import pandas as pd

from ft_pipelines.core.export import ExportKind, NotExported, OnnxModel, recommend, session_options
from ft_pipelines.params import ExportParams


def export_node(kind: ExportKind) -> Callable[..., tuple[OnnxModel | NotExported, dict]]:
    """The node function of ``kind``: its builder on its source model."""

    def export_kind(source: Any, images: pd.DataFrame, class_names: list[str],
                    export: ExportParams, decode_cache_dir: str | None
                    ) -> tuple[OnnxModel | NotExported, dict]:
        return kind.build(source, images, class_names, export, decode_cache_dir)

    export_kind.__name__ = export_kind.__qualname__ = kind.node_name
    export_kind.__doc__ = kind.build.__doc__
    return export_kind


def write_export_report(export: ExportParams, **checks: dict) -> dict[str, Any]:
    """``checks``: ``<kind>_check`` of every exported kind. A kind's ``report`` entries (the
    int8 search) go to the report's top level."""
    models, extra = {}, {}
    for key, check in checks.items():
        check = dict(check)
        extra.update(check.pop("report", None) or {})
        models[key.removesuffix("_check")] = check
    verified = next((check["verification"] for check in models.values()
                     if "verification" in check), {"providers": {}})
    return {
        "models": models,
        "recommendation": recommend(models),
        **extra,
        "settings": export.model_dump(),
        "runtime": {"onnxruntime": ort.__version__, "providers": list(verified["providers"]),
                    "threads": session_options(export.threads).intra_op_num_threads},
    }
