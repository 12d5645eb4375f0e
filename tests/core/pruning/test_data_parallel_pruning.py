"""Channel importance and pruning in 2 gloo processes: the gates train data-parallel to the
single-process scores; recovery and importance-aware fine-tuning train data-parallel, the pruned
channels are those of 1 process, rank 0 alone checkpoints and its finished checkpoint folder is
reported to the calling process (the cleanup hook's list)."""

import numpy as np
import torch

from ft_pipelines.core.models.artifact import channel_counts
from ft_pipelines.core.pruning import prune_and_finetune, score_channels
from ft_pipelines.core.training import take_finished_checkpoints
from ft_pipelines.core.training.checkpoint import load_checkpoint
from tests.conftest import MULTI_PROCESS
from tests.core.training.tiny import UNGUARDED_PRUNING, tiny_data, tiny_model

RUNTIME = {"device": "cpu", "precision": "fp32"}
PARAMS = {**UNGUARDED_PRUNING, "ratio": 0.4, "target": "channels", "steps": 2, "recovery_epochs": 1,
          "recovery_min_steps": 0,
          "finetune_epochs": 1, "lr": 0.05}

pytestmark = MULTI_PROCESS


def test_gates_in_two_processes_score_as_one_process():
    model = tiny_model()
    data = tiny_data(45)  # 45 = 2 batches of 32 and 13: uneven rank slices in the last one
    params = {"batch_size": 32, "gate_epochs": 2, "gate_lr": 0.05}
    single = score_channels(model, data, "taylor_gate", params, RUNTIME)
    double = score_channels(model, data, "taylor_gate", params,
                            {**RUNTIME, "distributed": {"processes": 2}})
    assert (single["scale"] != 1.0).any()  # the gates trained
    for column in ("scale", "raw_score", "group_score"):
        np.testing.assert_allclose(double[column], single[column], rtol=1e-4, atol=1e-7,
                                   err_msg=column)
    assert double["global_rank"].tolist() == single["global_rank"].tolist()


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
