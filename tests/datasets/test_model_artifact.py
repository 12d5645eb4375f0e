"""ModelArtifactDataset as the catalog uses it: versioned round trip, no overwrite, clear message
for a missing file, a killed save publishes nothing."""

from __future__ import annotations

import pytest
import torch
from kedro.io import Version
from kedro.io.core import DatasetError

from ft_pipelines.datasets import ModelArtifactDataset

V1, V2 = "2026-01-01T00.00.00.000Z", "2026-01-02T00.00.00.000Z"


def _dataset(tmp_path, save=None, load=None) -> ModelArtifactDataset:
    return ModelArtifactDataset(str(tmp_path / "model.safetensors"), version=Version(load, save))


def test_round_trip_gives_the_same_weights_and_outputs(tmp_path, fresh_backbone):
    _dataset(tmp_path, save=V1).save(fresh_backbone)
    loaded = _dataset(tmp_path).load()
    assert (tmp_path / "model.safetensors" / V1 / "model.safetensors").is_file()
    for (name, a), b in zip(fresh_backbone.state_dict().items(), loaded.state_dict().values(),
                            strict=True):
        assert torch.equal(a, b), name
    x = torch.rand(2, 3, 64, 64)
    fresh_backbone.eval()
    with torch.no_grad():
        assert torch.allclose(fresh_backbone(x), loaded(x))
    assert loaded.backbone_cfg == fresh_backbone.backbone_cfg


def test_an_existing_version_is_never_overwritten(tmp_path, fresh_backbone):
    _dataset(tmp_path, save=V1).save(fresh_backbone)
    before = (tmp_path / "model.safetensors" / V1 / "model.safetensors").read_bytes()
    with torch.no_grad():
        next(fresh_backbone.parameters()).add_(1.0)
    with pytest.raises(DatasetError, match="must not exist"):
        _dataset(tmp_path, save=V1).save(fresh_backbone)
    assert (tmp_path / "model.safetensors" / V1 / "model.safetensors").read_bytes() == before


def test_a_missing_model_names_the_path_and_the_fix(tmp_path):
    with pytest.raises(DatasetError, match=r"model\.safetensors.*run the stage that writes it"):
        _dataset(tmp_path, load=V1).load()
    assert not _dataset(tmp_path).exists()


def test_a_killed_save_leaves_the_previous_version_as_latest(tmp_path, fresh_backbone,
                                                            monkeypatch):
    from pathlib import Path

    _dataset(tmp_path, save=V1).save(fresh_backbone)
    real_write_bytes = Path.write_bytes

    def half_then_killed(self, data):
        real_write_bytes(self, data[: len(data) // 2])
        raise KeyboardInterrupt("killed mid-write")

    monkeypatch.setattr(Path, "write_bytes", half_then_killed)
    with pytest.raises(KeyboardInterrupt):
        _dataset(tmp_path, save=V2).save(fresh_backbone)
    monkeypatch.undo()
    files = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file())
    assert files == [f"model.safetensors/{V1}/model.safetensors"]
    assert _dataset(tmp_path).resolve_load_version() == V1
    _dataset(tmp_path).load()
