"""``missing_ok`` on the JSON dataset: an optional input loads None until a version exists."""

from __future__ import annotations

from pathlib import Path

import pytest
from kedro.io import Version
from kedro.io.core import DatasetError

from ft_pipelines.datasets import AtomicJSONDataset


def test_missing_ok_loads_none_until_saved_then_the_latest(tmp_path: Path):
    optional = AtomicJSONDataset(filepath=str(tmp_path / "m.json"), version=Version(None, None),
                                 missing_ok=True)
    assert optional.load() is None
    AtomicJSONDataset(filepath=str(tmp_path / "m.json"), version=Version(None, None)).save({"a": 1})
    reread = AtomicJSONDataset(filepath=str(tmp_path / "m.json"), version=Version(None, None),
                               missing_ok=True)
    assert reread.load() == {"a": 1}


def test_without_missing_ok_a_missing_version_is_an_error(tmp_path: Path):
    required = AtomicJSONDataset(filepath=str(tmp_path / "m.json"), version=Version(None, None))
    with pytest.raises(DatasetError):
        required.load()
