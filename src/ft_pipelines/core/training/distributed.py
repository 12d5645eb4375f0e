"""Data-parallel training: N processes on one machine (spawned here) or the world torchrun launched.

A leaf module (torch only): the function each rank runs is passed in, so this module imports no
trainer. Ranks see the same data and the same per-epoch order; the Trainer gives each rank its
slice of every global batch (``rank_slice``), so N processes x B/N equal 1 process x B.

Two rules keep the ranks together. Every decision that changes what a rank does next is taken
on rank 0 and broadcast (``rank0_decides``); every collective runs under the process group's
timeout (``runtime.distributed.timeout_s``), so a lost or diverged rank ends the run with a
``DistributedRunError`` naming the task, the rank and what it was doing, never a silent hang.
"""

from __future__ import annotations

import copy
import logging
import os
import pickle
import socket
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from ft_pipelines.core.utils import launched_rank, launched_world_size, leave_objects_to_exit
from ft_pipelines.core.utils.runtime import DistributedParams

logger = logging.getLogger(__name__)
T = TypeVar("T")
DEFAULT_TIMEOUT_S = DistributedParams().timeout_s  # for callers without a runtime block


class DistributedRunError(RuntimeError):
    """A data-parallel run failed on one rank: the message names the task, the rank and what it
    was doing; the other ranks were stopped."""


# What this rank is doing, for the error that names it. Spawned ranks also write it to a file
# (the parent reads it when a rank dies without a word, e.g. killed).
_activity: dict[str, Any] = {"task": "data-parallel work", "doing": "starting", "folder": None}


def set_activity(doing: str) -> None:
    """Record what this rank is doing now (cheap: call per epoch or step, not per batch)."""
    _activity["doing"] = doing
    folder = _activity["folder"]
    if folder is not None:
        Path(folder, f"rank{world()[0]}.txt").write_text(doing)


@contextmanager
def rank_context(task: str) -> Iterator[None]:
    """Run a rank's part of ``task``; an exception leaves it as a ``DistributedRunError`` that
    names the task, this rank and what it was doing (the original is its cause)."""
    _activity.update(task=task, doing="starting")
    try:
        yield
    except DistributedRunError:
        raise
    except Exception as error:
        rank, size = world()
        raise DistributedRunError(
            f"{task} failed on rank {rank} of {size} while {_activity['doing']}: "
            f"{type(error).__name__}: {error}") from error

def world() -> tuple[int, int]:
    """(rank, world size) of the current process group; (0, 1) without one."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def backend_name() -> str:
    """The process group's backend (gloo, nccl), or "none" in a single process."""
    if dist.is_available() and dist.is_initialized():
        return str(dist.get_backend())
    return "none"


def default_backend(device: torch.device | str) -> str:
    return "nccl" if torch.device(device).type == "cuda" else "gloo"


def join_launched_world(device: torch.device | str, timeout_s: float = DEFAULT_TIMEOUT_S
                        ) -> None:
    """Under torchrun: join the launched process group (once), one GPU per local rank; every
    collective of the group gives up after ``timeout_s``."""
    if launched_world_size() <= 1 or world()[1] > 1:
        return
    backend = default_backend(device)
    if backend == "nccl":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    timeout = timedelta(seconds=timeout_s)
    dist.init_process_group(backend, store=_launched_store(timeout), rank=launched_rank(),
                            world_size=launched_world_size(), timeout=timeout)
    logger.info("Joined the launched world: rank %d of %d (%s)", *world(), backend)


def _launched_store(timeout: timedelta) -> dist.Store:
    """The launcher's rendezvous store (MASTER_ADDR:MASTER_PORT), its keys under a prefix of
    this attempt: after an elastic restart torchrun's agent keeps its store, and a fast rank
    read the address a rank of the killed attempt had published, then failed to connect."""
    host, port = os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"])
    agent_hosts = os.environ.get("TORCHELASTIC_USE_AGENT_STORE") == str(True)
    store = dist.TCPStore(host, port, launched_world_size(),
                          is_master=launched_rank() == 0 and not agent_hosts, timeout=timeout)
    attempt = os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")
    return dist.PrefixStore(f"ft_pipelines/attempt-{attempt}", store)


def rank0_decides(value: T) -> T:
    """Rank 0's ``value`` on every rank (unchanged in a single process): how a decision that
    changes what the ranks do next (stop, keep, back off, resume) is taken once."""
    if world()[1] == 1:
        return value
    holder = [value]
    dist.broadcast_object_list(holder, src=0)
    return holder[0]


def broadcast_buffers(model: nn.Module) -> None:
    """Rank 0's buffers (BatchNorm running statistics) in every rank's ``model``, in place.

    DDP broadcasts buffers before each training forward, after which each rank updates its own;
    an evaluation that feeds a decision, or a model handed back, must use one set."""
    if world()[1] == 1:
        return
    by_kind: dict[tuple, list[torch.Tensor]] = {}
    for buffer in model.buffers():
        if buffer.numel():
            by_kind.setdefault((buffer.dtype, buffer.device), []).append(buffer)
    for buffers in by_kind.values():  # one collective per dtype and device
        flat = torch.cat([b.detach().reshape(-1) for b in buffers])
        dist.broadcast(flat, src=0)
        with torch.no_grad():
            for buffer, part in zip(buffers, flat.split([b.numel() for b in buffers]),
                                    strict=True):
                buffer.copy_(part.view_as(buffer))


def barrier() -> None:
    """Wait for every rank, under the group's timeout; on gloo the error names the ranks that
    did not arrive."""
    if world()[1] == 1:
        return
    if backend_name() == "gloo":
        dist.monitored_barrier(wait_all_ranks=True)
    else:
        dist.barrier()


def rank_slice(indices: torch.Tensor, rank: int, world_size: int) -> tuple[torch.Tensor, float]:
    """This rank's part of a global batch and the weight of its summed loss.

    Loss = sum over the slice x world_size / len(global batch): DDP's gradient average then
    equals the single-process mean over the whole batch, even when slices are uneven. A rank
    whose slice is empty takes one sample with weight 0 (every rank must run backward).
    """
    part = indices.tensor_split(world_size)[rank]
    if len(part) == 0:
        return indices[:1], 0.0
    return part, world_size / len(indices)


def all_reduce_sum(values: list[float], device: torch.device) -> list[float]:
    """Sum numbers over the ranks (unchanged in a single process)."""
    if world()[1] == 1:
        return values
    tensor = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(tensor)
    return tensor.tolist()


def all_reduce_tensors(tensors: list[torch.Tensor]) -> None:
    """Sum same-device tensors over the ranks in place, in one collective (no-op in one process)."""
    if world()[1] == 1 or not tensors:
        return
    flat = torch.cat([tensor.reshape(-1) for tensor in tensors])
    dist.all_reduce(flat)
    for tensor, part in zip(tensors, flat.split([t.numel() for t in tensors]), strict=True):
        tensor.copy_(part.view_as(tensor))


def wrap_data_parallel(net: nn.Module, device: torch.device) -> nn.Module:
    """DDP around ``net`` when a process group with several ranks exists, else ``net``."""
    if world()[1] == 1:
        return net
    from torch.nn.parallel import DistributedDataParallel

    device_ids = [device.index] if device.type == "cuda" else None
    # Buffers (BN running statistics) are not broadcast before every forward (one collective
    # per step saved): only batch statistics shape a training step, and the Trainer hands rank
    # 0's running statistics to every rank before an evaluation and at the end
    # (broadcast_buffers), which is what the per-forward broadcast amounted to.
    return DistributedDataParallel(net, device_ids=device_ids, broadcast_buffers=False)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _rank_main(rank: int, world_size: int, port: int, backend: str, threads: int,
               fn: Callable[..., Any], args: tuple, folder: str, task: str,
               timeout_s: float) -> None:
    torch.set_num_threads(threads)
    if backend == "nccl":
        torch.cuda.set_device(rank)
    dist.init_process_group(backend, init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                            world_size=world_size, timeout=timedelta(seconds=timeout_s))
    _activity["folder"] = folder
    try:
        with rank_context(task):
            result = fn(*_private_modules(args))
            if rank == 0:  # back to the parent the way mp.spawn sent the arguments: pickled
                with open(Path(folder) / "rank0.pickle", "wb") as file:
                    pickle.dump(result, file, protocol=pickle.HIGHEST_PROTOCOL)
            set_activity("waiting for the other ranks to finish")
            barrier()
    finally:
        dist.destroy_process_group()
        leave_objects_to_exit()  # the rank ends next, while the parent waits in join


def _private_modules(value: Any) -> Any:
    """``value`` with every ``nn.Module`` in it (in tuples, lists, dicts) deep-copied.

    mp.spawn hands every rank the same shared-memory storage for each tensor of the arguments:
    ranks training one model passed in would write each other's weights and BN statistics
    (each step applied once per rank, and racing). Data tensors stay shared: they are read.
    """
    if isinstance(value, nn.Module):
        return copy.deepcopy(value)
    if isinstance(value, tuple | list):
        return type(value)(_private_modules(item) for item in value)
    if isinstance(value, dict):
        return {key: _private_modules(item) for key, item in value.items()}
    return value


def spawn_data_parallel(fn: Callable[..., Any], args: tuple, processes: int,
                        device: torch.device | str, timeout_s: float = DEFAULT_TIMEOUT_S,
                        task: str = "data-parallel work") -> Any:
    """Run ``fn(*args)`` in ``processes`` spawned ranks (gloo on CPU, nccl on GPUs, one GPU per
    rank); returns rank 0's result. ``fn`` must be a module-level function (it is pickled).

    Each rank gets ``threads // processes`` CPU threads: oversubscribed cores make gloo several
    times slower. When a rank fails or dies, the others are stopped and a
    ``DistributedRunError`` names ``task``, the rank and what it was doing; a rank stuck in a
    collective gives up after ``timeout_s``.
    """
    backend = default_backend(device)
    if backend == "nccl" and torch.cuda.device_count() < processes:
        raise ValueError(f"runtime.distributed.processes={processes} but only "
                         f"{torch.cuda.device_count()} CUDA device(s): one process per GPU.")
    threads = max(1, torch.get_num_threads() // processes)
    logger.info("%s in %d processes (%s, %d thread(s) each)", task, processes, backend, threads)
    with tempfile.TemporaryDirectory(prefix="ft_ddp_") as folder:
        try:
            mp.spawn(_rank_main, nprocs=processes, join=True,
                     args=(processes, _free_port(), backend, threads, fn, args, folder, task,
                           timeout_s))
        except mp.ProcessRaisedException as error:
            raise DistributedRunError(_last_line(str(error))) from None
        except mp.ProcessExitedException as error:
            raise DistributedRunError(_died(error, processes, folder, task)) from None
        with open(Path(folder) / "rank0.pickle", "rb") as file:  # written by our rank 0 above
            return pickle.load(file)


def _last_line(traceback_text: str) -> str:
    """The exception line of a rank's traceback (what the rank's ``rank_context`` raised)."""
    lines = [line for line in traceback_text.strip().splitlines() if line.strip()]
    line = lines[-1] if lines else traceback_text
    prefix = f"{__name__}.{DistributedRunError.__name__}: "
    return line[len(prefix):] if line.startswith(prefix) else line


def _died(error: mp.ProcessExitedException, processes: int, folder: str, task: str) -> str:
    rank = error.error_index
    doing = Path(folder, f"rank{rank}.txt")
    doing = doing.read_text() if doing.exists() else "starting"
    how = (f"was killed by {error.signal_name}" if error.signal_name
           else f"exited with code {error.exit_code}")
    return (f"{task} failed: rank {rank} of {processes} (pid {error.error_pid}) {how} while "
            f"{doing}; "
            "the other ranks were stopped. Out of memory? Check the system log (dmesg), lower "
            "finetune.batch_size or runtime.distributed.processes.")
