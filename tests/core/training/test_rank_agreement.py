"""Several processes, one rule: every decision that changes what a rank does next is rank 0's,
and a rank that dies, fails or hangs ends the run with an error naming the task and the rank.

The ranks are made to disagree on purpose (each measures something else), as BatchNorm
statistics that drift apart after data-parallel training made them disagree for real: before
the rule, rank 0 kept a pruning attempt that rank 1 rejected, and rank 0 waited forever in the
final barrier while rank 1 started another attempt.
"""

import os
import signal
import time

import pytest
import torch
import torch.distributed as dist

from ft_pipelines.core.pruning.transtailor import back_off
from ft_pipelines.core.training import (
    Callback,
    DistributedRunError,
    Trainer,
    default_callbacks,
    set_activity,
    world,
)
from ft_pipelines.core.training.distributed import broadcast_buffers, spawn_data_parallel
from tests.conftest import MULTI_PROCESS, SLOW
from tests.core.training.test_distributed import _config, _register_tiny
from tests.core.training.tiny import tiny_data, tiny_model

pytestmark = MULTI_PROCESS


class _RankOneWantsToStop(Callback):
    """Rank 1 alone asks to stop after the first epoch; its validation score also differs."""

    def on_epoch_end(self, trainer, epoch, row):
        if trainer.rank == 1:
            trainer.stop = True
            row["val_acc"] = 1.0 - row["val_acc"]  # a different 'best epoch' on rank 1


def _disagreeing_ranks(passed_in: torch.nn.Module):
    """One rank's run (module level: spawned ranks import it). Returns, gathered on every rank,
    what each rank did, for the parent to compare."""
    rank = world()[0]
    # 0. a model handed to the ranks is each rank's own: mp.spawn shared its tensors' memory,
    # so ranks trained one set of weights, each step applied twice, racing
    with torch.no_grad():
        passed_in.weight.add_(rank + 1)
    dist.barrier()
    # 1. back-off: rank 0 measures within the limit, rank 1 far below it
    attempts = []

    def attempt(index, ratio):
        attempts.append(ratio)
        return f"model@{ratio}", (0.90 if rank == 0 else 0.10), {}

    kept, records, accepted = back_off(attempt, 0.4, reference=0.91, max_drop_points=2.0,
                                       max_attempts=3)
    # 2. early stopping and best-epoch choice: rank 1 wants to stop at once, rank 0 does not
    _register_tiny()
    model = tiny_model(1)
    config = _config(epochs=3)
    trainer = Trainer(model, config, callbacks=[*default_callbacks(config),
                                                _RankOneWantsToStop()])
    history = trainer.fit(tiny_data(24), tiny_data(12, seed=1))
    best_epoch = trainer.callbacks[0].best_epoch
    # 3. BatchNorm statistics that drifted apart are rank 0's after the broadcast
    bn = torch.nn.BatchNorm1d(4)
    bn.running_mean.fill_(float(rank))
    broadcast_buffers(bn)
    state = {"attempts": attempts, "kept": kept, "accepted": accepted, "epochs": len(history),
             "best_epoch": best_epoch, "bn_mean": bn.running_mean.tolist(),
             "weights": model.fc.weight.detach().clone(),
             "passed_in": passed_in.weight.detach().clone()}
    gathered = [None] * world()[1]
    dist.all_gather_object(gathered, state)
    return gathered


def test_ranks_that_disagree_follow_rank_0_and_finish():
    passed_in = torch.nn.Linear(2, 2)
    rank0, rank1 = spawn_data_parallel(_disagreeing_ranks, (passed_in,), 2, "cpu", timeout_s=60,
                                       task="agreement test")
    torch.testing.assert_close(rank0["passed_in"], passed_in.weight.detach() + 1)
    torch.testing.assert_close(rank1["passed_in"], passed_in.weight.detach() + 2)
    assert rank0["attempts"] == rank1["attempts"] == [0.4]  # rank 0 accepted at once
    assert rank0["kept"] == rank1["kept"] == "model@0.4" and rank1["accepted"]
    assert rank0["epochs"] == rank1["epochs"] == 3  # rank 1's stop request was not followed
    assert rank0["best_epoch"] == rank1["best_epoch"]
    assert rank0["bn_mean"] == rank1["bn_mean"] == [0.0] * 4
    torch.testing.assert_close(rank0["weights"], rank1["weights"])


def _rank_one_dies(seconds: float):
    """Rank 1 is killed in the middle of its work; rank 0 goes on to the next collective."""
    set_activity("training epoch 2 of 8")
    if world()[0] == 1:
        os.kill(os.getpid(), signal.SIGKILL)
    time.sleep(seconds)
    dist.all_reduce(torch.zeros(1))
    return "finished"


def _rank_one_hangs(seconds: float):
    """Rank 1 never reaches the collective rank 0 waits in (a diverged rank)."""
    set_activity(f"step {world()[0]}")
    if world()[0] == 1:
        time.sleep(seconds)
        return "late"
    dist.all_reduce(torch.zeros(1))
    return "finished"


@SLOW  # spawns ranks: pytest -m slow (.ci/run)
def test_a_killed_rank_ends_the_run_with_an_error_naming_it():
    started = time.perf_counter()
    with pytest.raises(DistributedRunError) as raised:
        spawn_data_parallel(_rank_one_dies, (2.0,), 2, "cpu", timeout_s=120, task="fine-tuning")
    message = str(raised.value)
    assert "fine-tuning failed: rank 1 of 2" in message and "SIGKILL" in message
    assert "while training epoch 2 of 8" in message
    # well within the timeout: the death is noticed, not waited out (~12 s idle; 38 s was seen
    # at load average 4, when the ranks' start alone is slow)
    assert time.perf_counter() - started < 60


@SLOW  # spawns ranks: pytest -m slow (.ci/run)
def test_a_rank_stuck_in_a_collective_times_out_with_an_error_naming_it():
    started = time.perf_counter()
    with pytest.raises(DistributedRunError) as raised:
        # the timeout also bounds the ranks' start-up rendezvous: short, but not so short
        # that a loaded machine misses it
        spawn_data_parallel(_rank_one_hangs, (120.0,), 2, "cpu", timeout_s=8, task="pruning")
    message = str(raised.value)
    assert "pruning failed on rank 0 of 2 while step 0" in message
    assert time.perf_counter() - started < 90  # the 8 s timeout, not rank 1's 120 s
