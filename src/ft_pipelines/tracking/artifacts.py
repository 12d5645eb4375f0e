"""Which saved datasets become run artifacts, and the files that hold them."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from kedro.io import AbstractVersionedDataset
from kedro_datasets.json import JSONDataset
from kedro_datasets.matplotlib import MatplotlibDataset
from kedro_datasets.text import TextDataset
from safetensors import safe_open

# by dataset type: the artifact folder of the run
FOLDERS: dict[type, str] = {MatplotlibDataset: "plots", TextDataset: "reports",
                            JSONDataset: "reports"}
# exported models (the export stage) are logged whatever their dataset type
EXPORTED_MODEL_SUFFIXES = ("_onnx", "_int8")


def artifact_folder(name: str, dataset: Any, models: list[str]) -> str | None:
    """``models/<name>`` for a model, ``plots`` or ``reports`` by type, None: not an artifact."""
    if name in models or name.endswith(EXPORTED_MODEL_SUFFIXES):
        return f"models/{name}"
    for dataset_type, folder in FOLDERS.items():
        if isinstance(dataset, dataset_type):
            return folder
    return None


def saved_path(dataset: Any) -> Path | None:
    """The local file (or folder) a dataset has just saved; None if it saves none."""
    filepath = getattr(dataset, "_filepath", None)
    if filepath is None or getattr(dataset, "_protocol", "file") not in ("file", "local"):
        return None
    if isinstance(dataset, AbstractVersionedDataset) and dataset._version is not None:
        # the version just saved (_get_save_path refuses a version that exists)
        filepath = dataset._get_versioned_path(dataset.resolve_save_version())
    path = Path(str(filepath))
    return path if path.exists() else None


def loaded_path(dataset: Any) -> Path | None:
    """The local file a dataset loads (its newest version when versioned); None if none."""
    if getattr(dataset, "_filepath", None) is None or (
            getattr(dataset, "_protocol", "file") not in ("file", "local")):
        return None
    getter = getattr(dataset, "_get_load_path", None)
    path = Path(str(getter() if getter else dataset._filepath))
    return path if path.exists() else None


def with_suffix(directory: Path, suffix: str, scratch: Path) -> Path:
    """A folder of figures saved under bare names (a dict of figures) as ``name.png`` files,
    so that the MLflow UI shows them."""
    if all(file.suffix for file in directory.iterdir()):
        return directory
    target = scratch / directory.name
    target.mkdir()
    for file in directory.iterdir():
        if file.is_file():
            shutil.copy(file, target / (file.name if file.suffix else f"{file.name}.{suffix}"))
    return target


def sidecars(path: Path) -> list[Path]:
    """JSON files kept next to a model file: ``model.json`` or ``model.onnx.json``."""
    candidates = {path.with_suffix(".json"), path.with_name(path.name + ".json")}
    return sorted(c for c in candidates if c != path and c.is_file())


def write_safetensors_spec(path: Path, directory: Path) -> Path | None:
    """The metadata of a ``.safetensors`` file (the model spec) as readable JSON, or None."""
    if path.suffix != ".safetensors":
        return None
    with safe_open(str(path), framework="pt") as handle:
        metadata = handle.metadata() or {}
    spec = {}
    for key, value in metadata.items():
        try:
            spec[key] = json.loads(value)
        except ValueError:
            spec[key] = value
    target = directory / f"{path.stem}.spec.json"
    target.write_text(json.dumps(spec, indent=2))
    return target
