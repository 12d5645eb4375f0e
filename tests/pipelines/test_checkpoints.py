"""Checkpoints are resume state, not a results cache: after a successful ``kedro run`` none is
left (``finetune.keep_checkpoints: true`` keeps them); when the node's outputs could not be saved
they stay, and the next run resumes from them instead of training again."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from ft_pipelines.datasets import ModelArtifactDataset
from tests.pipelines.conftest import run_pipelines


def checkpoint_files(project: Path) -> list[str]:
    root = project / "data/ci/06_models/checkpoints"
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


FAST = {"finetune.epochs": 1}  # CI settings, one training epoch: this test runs Kedro 4 times


def test_checkpoints_are_removed_once_outputs_are_saved(project, monkeypatch, caplog):
    run_pipelines(project, ["__default__"], **FAST)
    assert checkpoint_files(project) == []

    run_pipelines(project, ["regularized_finetuning", "pruning"],
                  **FAST, **{"finetune.keep_checkpoints": True})
    kept = checkpoint_files(project)
    assert [name.split("-")[0] for name in kept] == ["finetune", "prune"]
    assert all(name.endswith("/checkpoint.safetensors") for name in kept)

    # killed after training, before the model was stored: the checkpoint must survive ...
    real_save = ModelArtifactDataset.save

    def killed_while_saving(self, data):
        raise KeyboardInterrupt("killed while saving the model")

    monkeypatch.setattr(ModelArtifactDataset, "save", killed_while_saving)
    with pytest.raises(KeyboardInterrupt):
        run_pipelines(project, ["regularized_finetuning"], **FAST, **{"finetune.seed": 1})
    survivors = [n for n in checkpoint_files(project) if n not in kept]
    assert len(survivors) == 1 and survivors[0].startswith("finetune-")
    # ... and the next identical run resumes from it, then removes it
    monkeypatch.setattr(ModelArtifactDataset, "save", real_save)
    with caplog.at_level(logging.INFO):
        run_pipelines(project, ["regularized_finetuning"], **FAST, **{"finetune.seed": 1})
    assert "Resuming from" in caplog.text and survivors[0] in caplog.text
    assert checkpoint_files(project) == kept
