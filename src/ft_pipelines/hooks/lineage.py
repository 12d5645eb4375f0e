"""``LineageHook``: which version of which dataset each run loaded and saved, with its parameters
and the environment (threads, device, library versions, CPU) its results depend on."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from kedro.framework.hooks import hook_impl
from kedro.io import AbstractVersionedDataset, Version

from ft_pipelines.core.utils.environment import environment_record
from ft_pipelines.datasets import AtomicJSONDataset as JSONDataset
from ft_pipelines.hooks.parameters import ParametersHook

logger = logging.getLogger(__name__)


class LineageHook:
    """Writes one versioned ``lineage.json`` per run (also when the run fails)."""

    def __init__(self, parameters: ParametersHook) -> None:
        self.parameters = parameters
        self._reset()

    def _reset(self) -> None:
        self.catalog: Any = None
        self.record: dict[str, Any] = {}

    @hook_impl
    def after_catalog_created(
        self,
        catalog: Any,
        save_version: str,
        load_versions: dict[str, str],
    ) -> None:
        self.catalog = catalog
        self.record = {
            "save_version": save_version,
            "pinned_load_versions": load_versions,
            "parameters": self.parameters.plain(),
            "loaded": {},
            "saved": {},
        }

    @hook_impl
    def before_pipeline_run(self, run_params: dict[str, Any]) -> None:
        self.record.update(
            {
                "run_id": run_params.get("run_id"),
                "env": run_params.get("env"),
                "pipelines": run_params.get("pipeline_names"),
                "started": time.time(),
                "runtime_params": run_params.get("runtime_params"),
                "project_path": run_params.get("project_path"),
                "environment": environment_record(),
            }
        )

    def _version(self, name: str, load: bool) -> str | None:
        try:
            dataset = self.catalog[name]
        except Exception:  # a dataset created on the fly (memory) has no entry to ask
            return None
        if not isinstance(dataset, AbstractVersionedDataset):
            return None
        return dataset.resolve_load_version() if load else dataset.resolve_save_version()

    @hook_impl
    def after_dataset_loaded(self, dataset_name: str, node: Any) -> None:
        if self.catalog is None or dataset_name.startswith("params:"):
            return
        entry = self.record["loaded"].setdefault(dataset_name, {"by": []})
        entry["version"] = self._version(dataset_name, load=True)
        entry["by"].append(node.name)

    @hook_impl
    def after_dataset_saved(self, dataset_name: str, node: Any) -> None:
        if self.catalog is None:
            return
        self.record["saved"][dataset_name] = {
            "version": self._version(dataset_name, load=False),
            "by": node.name,
        }

    def _write(self, status: str) -> None:
        if not self.record:
            return
        self.record.update({"status": status, "finished": time.time()})
        directory = self.record["parameters"]["lineage"]["directory"]
        # relative to the project, as Kedro resolves the catalog's paths
        path = Path(self.record.get("project_path") or ".") / directory
        path = (path / "lineage.json").as_posix()
        dataset = JSONDataset(
            filepath=path,
            version=Version(None, self.record["save_version"]),
            save_args={"indent": 2, "default": str},
        )
        dataset.save(self.record)
        logger.info("Lineage of run %s written to %s", self.record.get("run_id"), path)
        self._reset()

    @hook_impl
    def after_pipeline_run(self) -> None:
        self._write("success")

    @hook_impl
    def on_pipeline_error(self, error: Exception) -> None:
        self.record["error"] = repr(error)
        self._write("failed")
