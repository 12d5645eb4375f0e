"""Checkpoints are resume state, not a results cache: after a successful ``kedro run`` none is
left (``finetune.keep_checkpoints: true`` keeps them); when the node's outputs could not be saved
they stay, and the next run resumes from them instead of training again."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from ft_pipelines.datasets import ModelArtifactDataset
from tests.conftest import CI_CHAIN
from tests.pipelines.conftest import run_pipelines


def checkpoint_files(project: Path) -> list[str]:
    root = project / "data/ci/06_models/checkpoints"
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


FAST = {"finetune.epochs": 1}  # CI settings, one training epoch: this test runs Kedro twice


@CI_CHAIN
def test_checkpoints_are_removed_once_outputs_are_saved(ci_chain, ci_chain_copy, monkeypatch,
                                                        caplog):
    # the session's whole `kedro run --env ci`
    assert (ci_chain / "data/ci/06_models/pruned_model.safetensors").is_dir()
    assert checkpoint_files(ci_chain) == []  # fine-tuning and pruning checkpoints both gone
    root = ci_chain / "data/ci/06_models/checkpoints"
    assert not root.exists() or list(root.iterdir()) == []  # no emptied prune-<key> folder
    project = ci_chain_copy

    # killed after training, before the model was stored: the checkpoint must survive ...
    real_save = ModelArtifactDataset.save

    def killed_while_saving(self, data):
        raise KeyboardInterrupt("killed while saving the model")

    monkeypatch.setattr(ModelArtifactDataset, "save", killed_while_saving)
    with pytest.raises(KeyboardInterrupt):
        run_pipelines(project, ["regularized_finetuning"], **FAST, **{"finetune.seed": 1})
    survivors = checkpoint_files(project)
    assert len(survivors) == 1 and survivors[0].startswith("finetune-")
    assert survivors[0].endswith("/checkpoint.safetensors")

    # ... the next identical run resumes from it instead of training again, and with
    # keep_checkpoints it leaves it in place
    monkeypatch.setattr(ModelArtifactDataset, "save", real_save)
    with caplog.at_level(logging.INFO):
        run_pipelines(project, ["regularized_finetuning"], **FAST,
                      **{"finetune.seed": 1, "finetune.keep_checkpoints": True})
    assert "Resuming from" in caplog.text and survivors[0] in caplog.text
    assert checkpoint_files(project) == survivors
