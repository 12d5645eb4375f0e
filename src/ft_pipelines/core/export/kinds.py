"""The exported model kinds, one registry entry each: ``finetuned_onnx``, ``pruned_onnx`` and
``pruned_int8``. An entry is the dataset name (the catalog entry, a value of ``predict.model``),
the dataset it is made from, a builder, and what the rest of the chain needs to know about it:
whether it inherits the pruning's verdict and where the export report's recommendation ranks it.

The export, evaluation and predict pipelines make one node input/output per registered kind,
and a kind without a catalog entry is stored like the built-in ones (hooks/catalog.py). To add
one: a module with a builder and one ``register_export_kind(...)`` line (docs/architecture.md,
"How to add"); the built-ins are in core/export/builders.py.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pandas as pd

from ft_pipelines.core.export.artifact import NotExported, OnnxModel
from ft_pipelines.core.export.settings import ExportParams
from ft_pipelines.core.utils.registry import Registry

Check = dict[str, Any]
#: builder(source model, images table, class names, export settings, decode cache directory)
#: -> (the exported model, or NotExported with the reason; its checks for the export report)
Builder = Callable[[Any, pd.DataFrame, list[str], ExportParams, str | None],
                   tuple[OnnxModel | NotExported, Check]]


@dataclass(frozen=True)
class ExportKind:
    name: str           # the dataset: catalog entry, predict.model value, evaluation row
    source: str         # the dataset it is made from: a PyTorch model or another kind
    build: Builder
    pruned: bool        # made from the pruned model: flagged when the pruning was rejected
    preference: int     # the export report recommends the lowest one its checks let ship
    optional: bool = False  # its builder may decline (NotExported): none is stored then
    node: str = ""      # the export node's name (default export_<name>)

    @property
    def node_name(self) -> str:
        return self.node or f"export_{self.name}"


EXPORT_KINDS: Registry[ExportKind] = Registry("predict.model")  # selects one for predict
register_export_kind = EXPORT_KINDS.register  # a new dataset of the export stage


def kinds_by_preference() -> list[ExportKind]:
    return sorted(EXPORT_KINDS.values(), key=lambda kind: kind.preference)


def always_exported() -> str:
    """The most preferred kind that is always made: what ``predict.model: auto`` uses when no
    report recommends one."""
    return next(kind.name for kind in kinds_by_preference() if not kind.optional)
