"""Kedro's parquet/JSON/text/figure datasets, saved atomically: a save killed half-way leaves no
file at the final path, and the previous version still loads as the latest."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from kedro.io import Version  # noqa: E402
from kedro.io.core import DatasetError  # noqa: E402

from ft_pipelines.datasets import (  # noqa: E402
    AtomicJSONDataset,
    AtomicMatplotlibDataset,
    AtomicParquetDataset,
    AtomicTextDataset,
)

V1, V2 = "2026-01-01T00.00.00.000Z", "2026-01-02T00.00.00.000Z"


def assert_same(kind: str, loaded, expected) -> None:
    if kind == "parquet":
        pd.testing.assert_frame_equal(loaded, expected)
    else:
        assert loaded == expected


def _figure():
    figure, axis = plt.subplots()
    axis.plot([0, 1], [1, 0])
    return figure


CASES = {
    "parquet": (AtomicParquetDataset, "t.parquet", pd.DataFrame({"a": [1, 2]}),
                pd.DataFrame({"a": list(range(10_000))})),
    "json": (AtomicJSONDataset, "t.json", {"v": 1}, {"v": list(range(10_000))}),
    "text": (AtomicTextDataset, "t.md", "# one\n", "# two\n" * 1000),
}


def _dataset(cls, path: Path, save_version: str | None, load_version: str | None = None):
    return cls(filepath=str(path), version=Version(load_version, save_version))


def _files(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


class HalfWrittenThenKilled(Exception):
    pass


@pytest.mark.parametrize("kind", sorted(CASES))
def test_a_save_killed_half_way_leaves_the_previous_version_as_latest(kind, tmp_path, monkeypatch):
    cls, name, first, second = CASES[kind]
    path = tmp_path / name
    _dataset(cls, path, V1).save(first)

    # the real file handle writes half its bytes, then the process "dies"
    from fsspec.implementations import local

    real_write = local.LocalFileOpener.write

    def write_half_then_die(self, data):
        real_write(self, data[: max(1, len(data) // 2)])
        self.flush()
        raise HalfWrittenThenKilled("killed mid-write")

    monkeypatch.setattr(local.LocalFileOpener, "write", write_half_then_die)
    with pytest.raises((HalfWrittenThenKilled, DatasetError)):
        _dataset(cls, path, V2).save(second)
    monkeypatch.undo()

    assert not (path / V2 / name).exists()
    assert _files(tmp_path) == [f"{name}/{V1}/{name}"]  # no temporary left either
    latest = _dataset(cls, path, None)
    assert latest.resolve_load_version() == V1
    assert_same(kind, latest.load(), first)


@pytest.mark.parametrize("kind", sorted(CASES))
def test_saved_files_load_back_readable_by_the_group(kind, tmp_path):
    cls, name, first, _ = CASES[kind]
    dataset = _dataset(cls, tmp_path / name, V1)
    dataset.save(first)
    final = tmp_path / name / V1 / name
    assert stat.S_IMODE(os.stat(final).st_mode) == 0o644
    assert _files(tmp_path) == [f"{name}/{V1}/{name}"]
    assert_same(kind, _dataset(cls, tmp_path / name, None).load(), first)


@pytest.mark.parametrize("kind", sorted(CASES))
def test_an_existing_version_is_never_overwritten(kind, tmp_path):
    cls, name, first, second = CASES[kind]
    _dataset(cls, tmp_path / name, V1).save(first)
    with pytest.raises(DatasetError, match="must not exist"):
        _dataset(cls, tmp_path / name, V1).save(second)


def test_figures_single_and_folder_are_saved_whole(tmp_path):
    _dataset(AtomicMatplotlibDataset, tmp_path / "one.png", V1).save(_figure())
    assert (tmp_path / "one.png" / V1 / "one.png").read_bytes()[:4] == b"\x89PNG"
    folder = tmp_path / "many"
    _dataset(AtomicMatplotlibDataset, folder, V1).save({"a.png": _figure(), "b.png": _figure()})
    assert _files(folder) == [f"{V1}/many/a.png", f"{V1}/many/b.png"]
    assert stat.S_IMODE(os.stat(folder / V1 / "many").st_mode) == 0o755


def test_a_figure_folder_killed_half_way_is_not_published(tmp_path, monkeypatch):
    folder = tmp_path / "many"
    _dataset(AtomicMatplotlibDataset, folder, V1).save({"a.png": _figure()})
    calls = []
    real = AtomicMatplotlibDataset._save_to_fs

    def second_figure_dies(self, full_key_path, plot):
        calls.append(full_key_path)
        if len(calls) == 2:
            raise HalfWrittenThenKilled("killed between figures")
        real(self, full_key_path=full_key_path, plot=plot)

    monkeypatch.setattr(AtomicMatplotlibDataset, "_save_to_fs", second_figure_dies)
    with pytest.raises((HalfWrittenThenKilled, DatasetError)):
        _dataset(AtomicMatplotlibDataset, folder, V2).save({"a.png": _figure(),
                                                            "b.png": _figure()})
    assert _files(folder) == [f"{V1}/many/a.png"]
    assert _dataset(AtomicMatplotlibDataset, folder, None).resolve_load_version() == V1
