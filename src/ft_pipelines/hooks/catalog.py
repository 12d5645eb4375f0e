"""Kedro hook: a catalog entry for every registered exported model kind that conf/base lacks.

The built-in kinds have entries in ``catalog.yml``; a kind a user registers
(``core/export/kinds.py``) is stored the same way as the first of them found there, next to it
(``<folder>/<kind>.onnx``, versioned), so adding a kind needs no catalog edit.
"""

from __future__ import annotations

from pathlib import PurePosixPath
from typing import Any

from kedro.framework.hooks import hook_impl
from kedro.io.core import AbstractDataset

from ft_pipelines.core.export import EXPORT_KINDS


class ExportKindsCatalogHook:
    @hook_impl
    def after_catalog_created(self, catalog: Any, conf_catalog: dict[str, Any],
                              save_version: str, load_versions: dict[str, str]) -> None:
        missing = [kind for kind in EXPORT_KINDS.values() if kind.name not in conf_catalog]
        template = next((conf_catalog[name] for name in EXPORT_KINDS if name in conf_catalog),
                        None)
        if not missing or template is None:
            return
        for kind in missing:
            config = kind_entry(template, kind.name, kind.optional)
            catalog[kind.name] = AbstractDataset.from_config(
                kind.name, config, load_versions.get(kind.name), save_version)


def kind_entry(template: dict[str, Any], name: str, optional: bool) -> dict[str, Any]:
    """``template`` (an exported model's catalog entry) for the kind ``name``: same dataset
    type, versioning and folder, its own file; an optional kind loads None while never made."""
    entry = {**template, "filepath": str(PurePosixPath(template["filepath"]).with_stem(name))}
    load_args = {key: value for key, value in (template.get("load_args") or {}).items()
                 if key != "missing_ok"}
    entry["load_args"] = {**load_args, "missing_ok": True} if optional else load_args
    return entry
