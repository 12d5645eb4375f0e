"""One way for every Trainer user to honour ``runtime.distributed``: run a training function in the
world torchrun launched, in this process, or in N spawned processes (rank 0's result back).

Separate from ``distributed.py`` (a leaf the Trainer imports) because it also hands the finished
checkpoint folders of the spawned rank 0 back to this process, where the cleanup hook looks.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ft_pipelines.core.training.checkpoint import (
    report_finished_checkpoints,
    take_finished_checkpoints,
)
from ft_pipelines.core.training.distributed import (
    join_launched_world,
    rank_context,
    spawn_data_parallel,
    world,
)
from ft_pipelines.core.utils import launched_world_size, resolve_device
from ft_pipelines.core.utils.runtime import RuntimeParams


def run_data_parallel(fn: Callable[..., Any], args: tuple,
                      runtime: RuntimeParams | dict[str, Any] | None,
                      task: str = "data-parallel work") -> Any:
    """``fn(*args)`` data-parallel as the ``runtime`` block says; returns rank 0's result.

    Under torchrun the launched processes join one group and each runs ``fn``; otherwise with
    ``distributed.processes`` N > 1, N processes are spawned (``fn`` must be module-level).
    ``fn`` must use the Trainer (or the collectives of ``distributed.py``) so the ranks agree.
    ``task`` names the work in the error raised when a rank fails, dies or times out.
    """
    runtime = RuntimeParams.model_validate(runtime or {})
    device = resolve_device(runtime.device)
    if world()[1] > 1:  # already one rank of a group (e.g. a spawned function calling us)
        with rank_context(task):
            return fn(*args)
    if launched_world_size() > 1:
        join_launched_world(device, runtime.distributed.timeout_s)
        with rank_context(task):
            return fn(*args)
    processes = runtime.distributed.processes
    if processes == 1:
        return fn(*args)
    result, folders = spawn_data_parallel(_with_finished_checkpoints, (fn, args), processes,
                                          device, runtime.distributed.timeout_s, task)
    report_finished_checkpoints(folders)
    return result


def _with_finished_checkpoints(fn: Callable[..., Any], args: tuple) -> tuple[Any, list]:
    """In a spawned rank: the result and the checkpoint folders its trainings finished."""
    return fn(*args), take_finished_checkpoints()

