"""``RunConsistencyHook``: one version of each dataset per run, and inputs that do not belong
together (a model made for other data, images and class names of different runs, a model
whose sources changed) stop the node, naming the versions that fit. The model-vs-data check
lives here only: every node gets it, whichever pipeline runs."""

from __future__ import annotations

import importlib
import json
import logging
import pkgutil
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pandas as pd
from kedro.framework.hooks import hook_impl
from kedro.io import AbstractVersionedDataset, Version

from ft_pipelines import pipelines as stage_packages
from ft_pipelines.core.models import (
    InputMismatchError,
    classes_of,
    describe_source,
    input_mismatch,
    read_spec,
    recorded_sources,
    source_fingerprint,
    stale_sources,
    training_data,
)
from ft_pipelines.core.models.artifact import read_artifact
from ft_pipelines.core.models.provenance import MADE_FROM

logger = logging.getLogger(__name__)


DATA_INPUTS = ("images", "class_names")  # what a model's recorded classes/fingerprint refer to
SOURCE_MODELS = ("pretrained_model",)  # the starting network: made for other data on purpose
MAX_VERSIONS_SEARCHED = 30  # newest versions read when looking for a matching one
DIFFERENT_RUNS = ("They were written by different runs (a stage-only or pinned run, a run that "
                  "stopped between two saves, or runs at the same time).")


def _read_data(name: str, path: str) -> Any:
    if name == "images":
        return pd.read_parquet(path, columns=["image_id", "label", "label_name", "split"])
    return json.loads(Path(path).read_text())


def _read_source(name: str, path: str) -> Any:
    """A stored version of an input, read as far as its fingerprint needs (a model's weights
    hash as the model does)."""
    if name in DATA_INPUTS:
        return _read_data(name, path)
    if path.endswith(".safetensors"):
        return read_artifact(path)[1]
    if path.endswith(".parquet"):
        return pd.read_parquet(path)
    return json.loads(Path(path).read_text())


def _sources_at(path: str) -> dict[str, dict[str, str]]:
    """What a stored version records it was computed from (a model: from its spec only)."""
    if path.endswith(".safetensors"):
        return dict((read_spec(path).get("data") or {}).get(MADE_FROM) or {})
    if path.endswith(".parquet"):
        return recorded_sources(pd.read_parquet(path))
    return {}


def _fingerprint_is(name: str, fingerprint: str | None) -> Any:
    """Whether a stored version of ``name`` (its path) has ``fingerprint``."""
    return lambda path: source_fingerprint(_read_source(name, path)) == fingerprint


def _producer(name: str) -> str | None:
    """The stage (a package under ``pipelines/``) whose pipeline writes ``name``."""
    # each stage's own create_pipeline: kedro's ``pipelines`` (and find_pipelines) hold only
    # the pipelines this run asked for
    for stage in pkgutil.iter_modules(stage_packages.__path__):
        module = importlib.import_module(f"{stage_packages.__name__}.{stage.name}")
        if name in module.create_pipeline().all_outputs():
            return stage.name
    return None


class RunConsistencyHook:
    """Within one run, every load of a dataset returns one version: the version this run saved,
    else the version it loaded first. Without it Kedro loads the newest version on disk, which
    a concurrent run may have written a moment ago.

    Before a node runs, its inputs must belong together, else it stops with an error naming
    the versions and the ``--load-versions`` (or the stages to re-run) that would fix it:
    ``images`` and ``class_names`` hold the same classes (checked before the first node when
    the run loads both); a model fits the ``images``/``class_names`` its artifact records; and
    an input that records what it was computed from (``record_sources``: a table computed for a
    model and data, a model made for a plan) meets those very inputs.

    A version pinned with ``--load-versions`` is left as the user pinned it.
    """

    def __init__(self) -> None:
        self.catalog: Any = None
        self.run: dict[str, Any] = {}
        self.check_run_data = False

    @hook_impl
    def after_catalog_created(self, catalog: Any) -> None:
        self.catalog = catalog

    @hook_impl
    def before_pipeline_run(self, run_params: dict[str, Any], pipeline: Any) -> None:
        # checked at the first node: an error raised here would skip on_pipeline_error
        self.run = run_params
        self.check_run_data = set(DATA_INPUTS) <= set(pipeline.inputs())

    def _versioned(self, name: str) -> AbstractVersionedDataset | None:
        try:
            dataset = self.catalog[name]
        except Exception:  # a dataset created on the fly (memory) has no entry to ask
            return None
        return dataset if isinstance(dataset, AbstractVersionedDataset) else None

    def _pin(self, name: str, saved: bool) -> None:
        dataset = self._versioned(name) if self.catalog is not None else None
        if dataset is None or not dataset._version or dataset._version.load:
            return
        version = dataset._version.save if saved else dataset.resolve_load_version()
        if version:
            # As DataCatalog.get(version=...) does on a copy, but on the catalog's own dataset
            # so that every later load of this run sees the pinned version.
            dataset._version = Version(version, dataset._version.save)
            dataset._clear_version_cache()

    @hook_impl
    def after_dataset_saved(self, dataset_name: str) -> None:
        self._pin(dataset_name, saved=True)

    @hook_impl
    def after_dataset_loaded(self, dataset_name: str) -> None:
        self._pin(dataset_name, saved=False)

    @hook_impl
    def before_node_run(self, node: Any, inputs: dict[str, Any]) -> None:
        if self.catalog is None:
            return
        if self.check_run_data:  # the run loads both: they agree before its first node
            self.check_run_data = False
            self._check_data("this run", self._run_data())
        data = {name: inputs[name] for name in DATA_INPUTS if name in inputs}
        self._check_data(f"node {node.name!r}", data)
        if data:
            self._check_models(node.name, inputs, data)
        self._check_sources(node.name, inputs)

    def _check_models(self, node: str, inputs: dict[str, Any], data: dict[str, Any]) -> None:
        for name, value in inputs.items():
            reason = name not in SOURCE_MODELS and training_data(value) and input_mismatch(
                value, data.get("images"), data.get("class_names"))
            if reason:
                raise InputMismatchError(self._explain(node, name, value, reason, data))

    def _loaded_version(self, name: str) -> str:
        dataset = self._versioned(name)
        return f"version {dataset.resolve_load_version()}" if dataset else "not versioned"

    def _run_data(self) -> dict[str, Any]:
        """The ``images``/``class_names`` versions this run will load, pinned as they are read
        (so that the nodes get what was checked); empty when either cannot be read."""
        data = {}
        for name in DATA_INPUTS:
            self._pin(name, saved=False)
            dataset = self._versioned(name)
            try:
                data[name] = _read_data(name, str(dataset._get_load_path()))
            except Exception:  # no version yet, not a file: the node's own load says why
                logger.debug("Not checking %s before the run", name, exc_info=True)
                return {}
        return data

    def _check_data(self, where: str, data: dict[str, Any]) -> None:
        if len(data) < len(DATA_INPUTS):
            return
        found = classes_of(data["images"])
        names = [str(name) for name in data["class_names"]]
        if found == names:
            return
        fixes = [
            f"kedro run ... --load-versions={pin} ({why})"
            for pin, why in [
                (self._pin_of("images", lambda p: classes_of(_read_data("images", p)) == names),
                 "the images of this class_names"),
                (self._pin_of("class_names", lambda p: _read_data("class_names", p) == found),
                 "the class_names of these images")] if pin
        ] + [self._rerun("images")]
        raise InputMismatchError(
            f"Inputs of {where} do not belong together: images "
            f"({self._loaded_version('images')}) holds {describe_source(found)} but "
            f"class_names ({self._loaded_version('class_names')}) holds "
            f"{describe_source(names)}. {DIFFERENT_RUNS} Fix: " + "; or ".join(fixes))

    def _check_sources(self, node: str, inputs: dict[str, Any]) -> None:
        fingerprints: dict[str, str] = {}

        def current(name: str) -> str:
            if name not in fingerprints:
                fingerprints[name] = source_fingerprint(inputs[name])
            return fingerprints[name]

        for name, value in inputs.items():
            stale = stale_sources(value, list(inputs), current)
            if stale:
                raise InputMismatchError(self._explain_sources(node, name, value, stale, inputs,
                                                               current))

    def _explain_sources(self, node: str, name: str, value: Any, stale: dict[str, dict],
                         inputs: dict[str, Any], current: Any) -> str:
        what = "; ".join(
            f"{name} ({self._loaded_version(name)}) was made for {source} = "
            f"{record.get('what')} (fingerprint {record.get('fingerprint')}), but the {source} "
            f"given ({self._loaded_version(source)}) is {describe_source(inputs[source])} "
            f"(fingerprint {current(source)})" for source, record in stale.items())
        fixes = []
        source_pins = [self._pin_of(source, _fingerprint_is(source, record.get("fingerprint")))
                       for source, record in stale.items()]
        if all(source_pins):
            fixes.append(f"kedro run ... --load-versions={','.join(source_pins)} (the "
                         f"{'/'.join(stale)} that {name} was made for)")
        recorded = {source: current(source) for source in recorded_sources(value)
                    if source in inputs}
        own_pin = self._pin_of(name, lambda path: all(
            _sources_at(path).get(source, {}).get("fingerprint") == fingerprint
            for source, fingerprint in recorded.items()))
        if own_pin:
            fixes.append(f"kedro run ... --load-versions={own_pin} (a {name} made for "
                         "these inputs)")
        fixes.append(self._rerun(name))
        return (f"Inputs of node {node!r} do not belong together: {what}. {DIFFERENT_RUNS} "
                "Fix: " + "; or ".join(fixes))

    def _rerun(self, name: str) -> str:
        """Re-running the stage that writes ``name`` with this run's stages and (other) pins."""
        stage, stages = _producer(name), list(self.run.get("pipeline_names") or [])
        if not stage or not stages or stage in stages:
            return f"re-run the stage that writes {name} together with this run's stages"
        rewritten = set(DATA_INPUTS) if name in DATA_INPUTS else {name}  # by that stage
        pins = ",".join(f"{pinned}:{version}" for pinned, version
                        in (self.run.get("load_versions") or {}).items() if pinned not in rewritten)
        return (f"kedro run ... --pipelines={','.join([stage, *stages])}"
                + (f" --load-versions={pins}" if pins else "") + f" (writes {name} anew)")

    def _explain(self, node: str, model_name: str, model: Any, reason: str,
                 data: dict[str, Any]) -> str:
        versions = ", ".join(f"{name} {self._loaded_version(name)}" for name in data)
        fixes = [f"kedro run ... --load-versions={pins} (the data {model_name} was made for)"
                 for pins in [self._data_pins(model, data)] if pins]
        model_pin = self._model_pin(model_name, data)
        if model_pin:
            fixes.append(f"kedro run ... --load-versions={model_pin} (a {model_name} made for "
                         "this data)")
        fixes.append("re-run the stages that produce them together (from data_ingestion on)")
        return (
            f"Inputs of node {node!r} do not belong together: {model_name} "
            f"({self._loaded_version(model_name)}) {reason}; loaded with {versions}. They were "
            "written by different runs (a stage-only or pinned run, or runs at the same time). "
            "Fix: " + "; or ".join(fixes)
        )

    def _matching_versions(self, name: str, fits: Any) -> str | None:
        dataset = self._versioned(name)
        if dataset is None:
            return None
        try:
            paths = dataset.list_versions(full_path=True)[:MAX_VERSIONS_SEARCHED]
        except Exception:  # no versions on disk
            return None
        for path in paths:
            try:
                if fits(path):
                    return Path(path).parent.name
            except Exception:  # an unreadable version is simply not a candidate
                logger.debug("Skipping unreadable %s", path, exc_info=True)
        return None

    def _pin_of(self, name: str, fits: Any) -> str | None:
        """``name:<newest version that fits>``, or None."""
        version = self._matching_versions(name, fits)
        return f"{name}:{version}" if version else None

    def _data_pins(self, model: Any, data: dict[str, Any]) -> str:
        pins = []
        for name in data:
            version = self._matching_versions(name, lambda path, name=name: input_mismatch(
                model, **{name: _read_data(name, path)}) is None)
            if version:
                pins.append(f"{name}:{version}")
        return ",".join(pins) if len(pins) == len(data) else ""

    def _model_pin(self, model_name: str, data: dict[str, Any]) -> str | None:
        def made_for_this_data(path: str) -> bool:
            record = read_spec(path).get("data")
            stub = SimpleNamespace(trained_on=record)
            return bool(record) and input_mismatch(
                stub, data.get("images"), data.get("class_names")) is None

        version = self._matching_versions(model_name, made_for_this_data)
        return f"{model_name}:{version}" if version else None
