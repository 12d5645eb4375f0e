"""Kedro dataset for exported models: an ``.onnx`` file and its JSON sidecar, side by side."""

from __future__ import annotations

import json
import logging
import os
import tempfile
from collections.abc import Callable
from functools import wraps
from pathlib import Path, PurePosixPath
from typing import Any

from kedro.io import AbstractVersionedDataset, Version
from kedro.io.core import DatasetError, VersionNotFoundError

from ft_pipelines.core.export import NotExported, OnnxModel
from ft_pipelines.core.export.artifact import SIDECAR_FIX, SidecarError
from ft_pipelines.datasets.atomic import AtomicJSONDataset
from ft_pipelines.datasets.versions import VersionedPathsMixin

logger = logging.getLogger(__name__)


def _write_atomically(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


class OnnxModelDataset(VersionedPathsMixin,
                       AbstractVersionedDataset[OnnxModel | NotExported, OnnxModel | None]):
    """Save/load an ``OnnxModel``: ``<name>.onnx`` plus ``<name>.json`` (the sidecar), no pickle.

    Both files are written to temporary names and renamed, the sidecar first: a version exists
    (its ``.onnx`` is visible) only once both are complete, so a killed save leaves nothing a
    later run would load. Loading checks the sidecar's sha256 against the ONNX bytes.

    An optional model (the int8 one: ``export.quantize: null``) is saved as ``NotExported``: no
    file is written and no version appears. ``load_args: {missing_ok: true}`` then loads
    ``None`` while no version exists at all.

    Example catalog entry::

        pruned_onnx:
          type: ft_pipelines.datasets.OnnxModelDataset
          filepath: data/06_models/pruned_onnx.onnx
          versioned: true
    """

    first_version_fix = ("export a model first: `kedro run` (the whole chain ends with the "
                         "export) or, with trained models already stored, `kedro run "
                         "--pipelines=export`")

    def __init__(self, filepath: str, version: Version | None = None,
                 load_args: dict[str, Any] | None = None,
                 metadata: dict[str, Any] | None = None) -> None:
        if not filepath.endswith(".onnx"):
            raise DatasetError(f"OnnxModelDataset filepath {filepath!r} must end in .onnx")
        super().__init__(PurePosixPath(filepath), version)
        unknown = set(load_args or {}) - {"missing_ok"}
        if unknown:
            raise DatasetError(f"OnnxModelDataset load_args accepts only missing_ok; got "
                               f"{sorted(unknown)}")
        self._missing_ok = bool((load_args or {}).get("missing_ok", False))
        self.metadata = metadata

    @staticmethod
    def sidecar_path(onnx_path: Path) -> Path:
        return onnx_path.with_suffix(".json")

    def load(self) -> OnnxModel | None:
        try:
            path = Path(str(self._get_load_path()))
        except VersionNotFoundError:
            if self._missing_ok:
                return None
            raise
        sidecar = self.sidecar_path(path)
        if not path.is_file() or not sidecar.is_file():
            raise DatasetError(f"No exported model at {path} (with its sidecar {sidecar.name}); "
                               "run `kedro run --pipelines=export`")
        try:
            described = json.loads(sidecar.read_text())
        except (ValueError, UnicodeDecodeError) as error:
            raise DatasetError(f"{sidecar}: not a JSON sidecar ({error}). {SIDECAR_FIX}"
                               ) from error
        if not isinstance(described, dict):
            raise DatasetError(f"{sidecar}: not a JSON object. {SIDECAR_FIX}")
        try:
            return OnnxModel(path.read_bytes(), described)
        except SidecarError as error:
            raise DatasetError(f"{sidecar} (the sidecar of {path.name}): {error}") from error
        except ValueError as error:
            raise DatasetError(f"{path}: {error}") from error

    @classmethod
    def _save_wrapper(cls, save_func: Callable[..., None]) -> Callable[..., None]:
        """Kedro's versioned save, except for ``NotExported``: Kedro checks after every save
        that the new version is the latest, which a save that writes nothing cannot be."""
        versioned_save = super()._save_wrapper(save_func)

        @wraps(save_func)
        def save(self: OnnxModelDataset, data: OnnxModel | NotExported) -> None:
            if isinstance(data, NotExported):
                logger.info("%s: nothing written (%s)", self._filepath.name, data.reason)
                return
            versioned_save(self, data)

        save.__savewrapped__ = True  # type: ignore[attr-defined]  # as Kedro marks its wrapper
        return save

    def save(self, data: OnnxModel | NotExported) -> None:
        if not isinstance(data, OnnxModel):
            raise DatasetError(f"OnnxModelDataset saves an OnnxModel, got {type(data).__name__}")
        path = Path(str(self._get_save_path()))
        if path.exists():  # versioning makes this unreachable unless a version is reused
            raise DatasetError(f"{path} exists; refusing to overwrite a stored model")
        self._remove_stale_temporaries()
        path.parent.mkdir(parents=True, exist_ok=True)
        _write_atomically(self.sidecar_path(path),
                          json.dumps(data.sidecar, indent=2).encode("utf-8"))
        _write_atomically(path, data.model_bytes)

    def _exists(self) -> bool:
        try:
            return Path(str(self._get_load_path())).is_file()
        except DatasetError:
            return False

    def _describe(self) -> dict[str, Any]:
        return {"filepath": str(self._filepath), "version": self._version,
                "missing_ok": self._missing_ok}


class ExportReportDataset(AtomicJSONDataset):
    """The export report (JSON), whose missing first version says how to export: ``predict``
    loads it before the models, so on a fresh clone this is the error a user sees."""

    first_version_fix = OnnxModelDataset.first_version_fix
