"""Pruning then importance-aware fine-tuning on the tiny CNN: channels really go, the input
model is untouched, the history is written and the pruned model still knows the classes."""

from __future__ import annotations

import torch

from ft_pipelines.core.models.artifact import channel_counts
from ft_pipelines.core.pruning import prune_and_finetune, score_channels
from ft_pipelines.core.training import TrainConfig
from ft_pipelines.core.training.checkpoint import load_checkpoint
from ft_pipelines.core.utils import count_params
from tests.core.training.tiny import UNGUARDED_PRUNING, run, tiny_data, tiny_model


def test_prune_and_finetune_on_a_tiny_model(tmp_path):
    model = tiny_model()
    run(model, TrainConfig(epochs=3, batch_size=16, lr_pretrained=0.1, lr_new=0.1,
                           warmup_epochs=0.0, progress=False))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    splits = {"train": tiny_data(), "val": tiny_data(24, seed=1)}
    table = score_channels(model, splits["train"], "l1")
    params = {**UNGUARDED_PRUNING, "ratio": 0.4, "target": "channels", "finetune_epochs": 2,
              "lr": 0.05}
    pruned, summary, history = prune_and_finetune(model, table, splits, params, tmp_path)

    kept, original = channel_counts(pruned), channel_counts(model)
    bn_layers = [name for name, counts in original.items() if len(counts) == 1]
    assert all(kept[n][0] <= original[n][0] for n in bn_layers)
    assert sum(kept[n][0] for n in bn_layers) < sum(original[n][0] for n in bn_layers)
    assert count_params(pruned) < count_params(model)
    assert summary["params_after"] < summary["params_before"]
    assert pruned(torch.rand(2, 3, 32, 32)).shape == (2, 3)
    for name, tensor in model.state_dict().items():  # pruned a copy
        assert torch.equal(before[name], tensor), name
    assert history["epoch"].tolist() == [1, 2]
    assert history["val_acc"].max() >= 0.8  # the class signal survives pruning
    # the first (and here only) pruning attempt checkpoints in its own folder
    assert load_checkpoint(tmp_path / "attempt-0")[1]["epoch"] == 2
