"""The pruning stage in 2 gloo processes: recovery and importance-aware fine-tuning train
data-parallel, the pruned channels are those of 1 process, rank 0 alone checkpoints and its
finished checkpoint folder is reported to the calling process (the cleanup hook's list)."""

import torch

from ft_pipelines.core.models import channel_counts
from ft_pipelines.core.pruning import prune_and_finetune, score_channels
from ft_pipelines.core.training import load_checkpoint, take_finished_checkpoints
from tests.core.training.tiny import tiny_data, tiny_model

RUNTIME = {"device": "cpu", "precision": "fp32"}
PARAMS = {"ratio": 0.4, "target": "channels", "steps": 2, "recovery_epochs": 1,
          "finetune_epochs": 1, "lr": 0.05}


def test_two_processes_prune_the_channels_of_one_process(tmp_path):
    model = tiny_model()
    splits = {"train": tiny_data(), "val": tiny_data(24, seed=1)}
    table = score_channels(model, splits["train"], "l1")
    single, _, single_history = prune_and_finetune(model, table, splits, PARAMS, None, RUNTIME)
    take_finished_checkpoints()

    double, summary, history = prune_and_finetune(
        model, table, splits, PARAMS, tmp_path, {**RUNTIME, "distributed": {"processes": 2}})

    assert channel_counts(double) == channel_counts(single) != channel_counts(model)
    assert summary["params_after"] < summary["params_before"]
    assert double(torch.rand(2, 3, 32, 32)).shape == (2, 3)
    assert set(single_history["processes"]) == {1} and set(single_history["backend"]) == {"none"}
    assert set(history["processes"]) == {2} and set(history["backend"]) == {"gloo"}
    assert load_checkpoint(tmp_path / "attempt-0")[1]["epoch"] == 1  # written by rank 0
    assert take_finished_checkpoints() == [tmp_path / "attempt-0"]
