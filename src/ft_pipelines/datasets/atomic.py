"""Kedro's parquet, JSON, text and figure datasets, saved atomically.

kedro-datasets writes straight to the final versioned path, so a run killed half-way leaves a
truncated ``images.parquet`` that every later run loads as "latest". These subclasses let the
stock ``save`` write to a temporary name inside the version folder and rename it into place
(``core.utils.atomic_write``): the final path holds a complete file or nothing, and Kedro's
version lookup (which only matches the final name) then still finds the previous version.

A subclass rather than a hook: a hook runs after the dataset has already written its file, so
it cannot change where the bytes go; the subclass keeps every option of the stock dataset.
"""

from __future__ import annotations

from pathlib import PurePosixPath
from typing import Any

from kedro.io.core import VersionNotFoundError, get_filepath_str
from kedro_datasets.json import JSONDataset
from kedro_datasets.matplotlib import MatplotlibDataset
from kedro_datasets.pandas import ParquetDataset
from kedro_datasets.text import TextDataset

from ft_pipelines.core.utils import atomic_write
from ft_pipelines.datasets.versions import VersionedPathsMixin


class AtomicSaveMixin(VersionedPathsMixin):
    """Put before a kedro-datasets class: its ``save`` then writes through ``atomic_write``.

    The stock ``save`` asks ``_get_save_path()`` where to write; while ours runs, that answer is
    the temporary path. Remote file systems (one object per write) are saved as usual. A save
    first removes the stale temporaries that killed saves left (``datasets.versions``).
    """

    _staging_path: PurePosixPath | None = None

    def _get_save_path(self) -> PurePosixPath:
        if self._staging_path is not None:
            return self._staging_path
        return super()._get_save_path()  # type: ignore[misc]

    def save(self, data: Any) -> None:
        # the parent's save without Kedro's wrapper: ours is already wrapped (version, errors)
        stock_save = super().save.__wrapped__  # type: ignore[misc]
        final = self._get_save_path()  # also refuses an existing versioned path
        self._remove_stale_temporaries()
        if getattr(self, "_protocol", "file") != "file":
            stock_save(self, data)
            return

        def write(tmp: str) -> None:
            self._staging_path = PurePosixPath(tmp)
            try:
                stock_save(self, data)
            finally:
                self._staging_path = None

        atomic_write(get_filepath_str(final, self._protocol), write)  # type: ignore[attr-defined]


class AtomicParquetDataset(AtomicSaveMixin, ParquetDataset):
    """``pandas.ParquetDataset`` saved atomically."""


class AtomicJSONDataset(AtomicSaveMixin, JSONDataset):
    """``json.JSONDataset`` saved atomically.

    ``missing_ok: true`` (catalog) loads ``None`` while no version exists at all: an optional
    input, e.g. the evaluation that ``predict`` follows when there is one.
    """

    def __init__(self, *args: Any, missing_ok: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._missing_ok = missing_ok

    def load(self) -> Any:
        if self._missing_ok:
            try:
                self._get_load_path()
            except VersionNotFoundError:
                return None
        return super().load()


class AtomicTextDataset(AtomicSaveMixin, TextDataset):
    """``text.TextDataset`` saved atomically."""


class AtomicMatplotlibDataset(AtomicSaveMixin, MatplotlibDataset):
    """``matplotlib.MatplotlibDataset`` saved atomically (one figure, or a folder of them)."""
