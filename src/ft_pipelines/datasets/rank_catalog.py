"""The catalog of ranks > 0 in a torchrun-launched run: one set of writes, rank 0's.

Every launched process runs the same Kedro session; Kedro has no notion of ranks. Rank 0 uses
the normal catalog; the others use this one, whose saves stay in the process's memory (later
nodes of the same run still load them) and never reach disk, so one run writes one version of
each output. ``settings.py`` picks it, and drops the lineage and MLflow hooks, on ranks > 0.
"""

from __future__ import annotations

from typing import Any

from kedro.io import DataCatalog


class RankLocalCatalog(DataCatalog):
    """A DataCatalog whose saves are kept in memory, not written."""

    def save(self, ds_name: str, data: Any) -> None:
        self.__dict__.setdefault("_rank_local", {})[ds_name] = data

    def load(self, ds_name: str, version: str | None = None) -> Any:
        kept = self.__dict__.get("_rank_local", {})
        if ds_name in kept:
            return kept[ds_name]
        return super().load(ds_name, version)

    def exists(self, ds_name: str) -> bool:
        return ds_name in self.__dict__.get("_rank_local", {}) or super().exists(ds_name)
