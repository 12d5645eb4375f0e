"""Kedro dataset for models: a safetensors file with the architecture spec in its metadata."""

from __future__ import annotations

import hashlib
from pathlib import Path, PurePosixPath
from typing import Any

from kedro.io import AbstractVersionedDataset, Version
from kedro.io.core import DatasetError
from torch import nn

from ft_pipelines.core.models import load_model_file, save_model_file
from ft_pipelines.datasets.versions import VersionedPathsMixin


class ModelArtifactDataset(VersionedPathsMixin, AbstractVersionedDataset[nn.Module, nn.Module]):
    """Save/load a model built by ``ft_pipelines`` without unpickling anything.

    Example catalog entry::

        finetuned_model:
          type: ft_pipelines.datasets.ModelArtifactDataset
          filepath: data/06_models/finetuned_model.safetensors
          versioned: true
    """

    first_version_fix = ("run the stage that writes it (`kedro run`, or `kedro run "
                         "--pipelines=<stage>` with the stages before it stored)")

    def __init__(
        self, filepath: str, version: Version | None = None, metadata: dict[str, Any] | None = None
    ) -> None:
        super().__init__(PurePosixPath(filepath), version)
        self.metadata = metadata

    def load(self) -> nn.Module:
        path = Path(str(self._get_load_path()))
        if not path.is_file():
            raise DatasetError(f"No model artifact at {path}; run the stage that writes it")
        model = load_model_file(path)
        # which stored version this is, for what is derived from it (an ONNX export's sidecar)
        model.artifact_source = {"path": path.as_posix(), "version": self.resolve_load_version(),
                                 "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}
        return model

    def save(self, data: nn.Module) -> None:
        path = Path(str(self._get_save_path()))
        if path.exists():  # versioning makes this unreachable unless a version is reused
            raise DatasetError(f"{path} exists; refusing to overwrite a stored model")
        self._remove_stale_temporaries()
        save_model_file(data, path)

    def _exists(self) -> bool:
        try:
            return Path(str(self._get_load_path())).is_file()
        except DatasetError:
            return False

    def _describe(self) -> dict[str, Any]:
        return {"filepath": str(self._filepath), "version": self._version}
