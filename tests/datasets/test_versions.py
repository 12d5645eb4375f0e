"""Versioned datasets say which versions exist when a pinned one does not, what writes the first
one when none does, and clean up what killed saves left in their version folders."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from kedro.io import Version
from kedro.io.core import DatasetError

from ft_pipelines.datasets import AtomicJSONDataset, ModelArtifactDataset, OnnxModelDataset
from ft_pipelines.datasets.versions import STALE_AFTER_S

V0, V1, V2, V3 = (f"2026-01-0{d}T00.00.00.000Z" for d in (1, 2, 3, 4))


def _json(path: Path, load: str | None = None, save: str | None = None) -> AtomicJSONDataset:
    return AtomicJSONDataset(filepath=str(path / "t.json"), version=Version(load, save))


def test_a_missing_pinned_version_lists_the_stored_ones_and_a_pin_that_works(tmp_path):
    for version in (V1, V2):
        _json(tmp_path, save=version).save({"v": version})
    with pytest.raises(DatasetError) as info:
        _json(tmp_path, load=V0).load()
    message = str(info.value)
    assert f"Version '{V0}' of t.json (pinned with --load-versions) is not stored" in message
    assert f"Stored versions, oldest first: {V1}, {V2}" in message
    assert f"--load-versions=<dataset>:{V2}" in message
    assert "run the" not in message  # a new run would not make the pinned version
    assert _json(tmp_path, load=V1).load() == {"v": V1}  # the fix it suggests works


def test_a_model_pinned_to_a_missing_version_names_the_stored_ones(tmp_path):
    (tmp_path / "m.safetensors" / V1).mkdir(parents=True)
    (tmp_path / "m.safetensors" / V1 / "m.safetensors").write_bytes(b"")
    dataset = ModelArtifactDataset(str(tmp_path / "m.safetensors"), Version(V3, None))
    with pytest.raises(DatasetError, match=f"Stored versions, oldest first: {V1}"):
        dataset.load()


def test_predict_before_any_export_says_how_to_export(tmp_path):
    dataset = OnnxModelDataset(str(tmp_path / "finetuned_onnx.onnx"), Version(None, None))
    with pytest.raises(DatasetError) as info:
        dataset.load()
    assert "No version of" in str(info.value) and "finetuned_onnx.onnx" in str(info.value)
    assert "`kedro run --pipelines=export`" in str(info.value)


def _temporary(folder: Path, name: str, age_s: float) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_bytes(b"half a file")
    then = time.time() - age_s
    os.utime(path, (then, then))
    return path


def test_a_save_removes_what_killed_saves_left_and_keeps_what_may_be_in_use(tmp_path):
    root = tmp_path / "t.json"
    _json(tmp_path, save=V1).save({"v": 1})
    orphan = _temporary(root / V0, ".t.json.0123456789abcdef.tmp", STALE_AFTER_S + 60)
    beside = _temporary(root / V1, ".t.json.fedcba9876543210.tmp", STALE_AFTER_S + 60)
    writing = _temporary(root / V3, ".t.json.aaaaaaaaaaaaaaaa.tmp", 5)  # a concurrent save
    _json(tmp_path, save=V2).save({"v": 2})
    assert not orphan.exists() and not (root / V0).exists()  # the orphan folder went too
    assert not beside.exists() and (root / V1 / "t.json").exists()
    assert writing.exists()
    assert _json(tmp_path).load() == {"v": 2}
