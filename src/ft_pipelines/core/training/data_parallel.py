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
    DEFAULT_TIMEOUT_S,
    join_launched_world,
    rank_context,
    spawn_data_parallel,
    world,
)
from ft_pipelines.core.utils import launched_world_size, resolve_device


def requested_processes(runtime: dict[str, Any] | None) -> int:
    """``runtime.distributed.processes`` (1 when absent)."""
    return int(((runtime or {}).get("distributed") or {}).get("processes", 1))


def collective_timeout_s(runtime: dict[str, Any] | None) -> float:
    """``runtime.distributed.timeout_s``: how long any collective or barrier may wait."""
    distributed = (runtime or {}).get("distributed") or {}
    return float(distributed.get("timeout_s") or DEFAULT_TIMEOUT_S)


def run_data_parallel(fn: Callable[..., Any], args: tuple, runtime: dict[str, Any] | None,
                      task: str = "data-parallel work") -> Any:
    """``fn(*args)`` data-parallel as the ``runtime`` block says; returns rank 0's result.

    Under torchrun the launched processes join one group and each runs ``fn``; otherwise with
    ``distributed.processes`` N > 1, N processes are spawned (``fn`` must be module-level).
    ``fn`` must use the Trainer (or the collectives of ``distributed.py``) so the ranks agree.
    ``task`` names the work in the error raised when a rank fails, dies or times out.
    """
    runtime = runtime or {}
    device = resolve_device(runtime.get("device", "auto"))
    if world()[1] > 1:  # already one rank of a group (e.g. a spawned function calling us)
        with rank_context(task):
            return fn(*args)
    if launched_world_size() > 1:
        join_launched_world(device, collective_timeout_s(runtime))
        with rank_context(task):
            return fn(*args)
    processes = requested_processes(runtime)
    if processes == 1:
        return fn(*args)
    result, folders = spawn_data_parallel(_with_finished_checkpoints, (fn, args), processes,
                                          device, collective_timeout_s(runtime), task)
    report_finished_checkpoints(folders)
    return result


def _with_finished_checkpoints(fn: Callable[..., Any], args: tuple) -> tuple[Any, list]:
    """In a spawned rank: the result and the checkpoint folders its trainings finished."""
    return fn(*args), take_finished_checkpoints()

