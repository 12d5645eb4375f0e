"""Data-parallel training: N processes on one machine (spawned here) or the world torchrun launched.

A leaf module (torch only): the function each rank runs is passed in, so this module imports no
trainer. Ranks see the same data and the same per-epoch order; the Trainer gives each rank its
slice of every global batch (``rank_slice``), so N processes x B/N equal 1 process x B.
"""

from __future__ import annotations

import logging
import os
import pickle
import socket
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from ft_pipelines.core.utils import launched_world_size, leave_objects_to_exit

logger = logging.getLogger(__name__)


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


def join_launched_world(device: torch.device | str) -> None:
    """Under torchrun: join the launched process group (once), one GPU per local rank."""
    if launched_world_size() <= 1 or world()[1] > 1:
        return
    backend = default_backend(device)
    if backend == "nccl":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group(backend, init_method="env://")
    logger.info("Joined the launched world: rank %d of %d (%s)", *world(), backend)


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
    return DistributedDataParallel(net, device_ids=device_ids)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _rank_main(rank: int, world_size: int, port: int, backend: str, threads: int,
               fn: Callable[..., Any], args: tuple, result_path: str) -> None:
    torch.set_num_threads(threads)
    if backend == "nccl":
        torch.cuda.set_device(rank)
    dist.init_process_group(backend, init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                            world_size=world_size)
    try:
        result = fn(*args)
        if rank == 0:  # back to the parent the way mp.spawn sent the arguments: pickled
            with open(result_path, "wb") as file:
                pickle.dump(result, file, protocol=pickle.HIGHEST_PROTOCOL)
        dist.barrier()
    finally:
        dist.destroy_process_group()
        leave_objects_to_exit()  # the rank ends next, while the parent waits in join


def spawn_data_parallel(fn: Callable[..., Any], args: tuple, processes: int,
                        device: torch.device | str) -> Any:
    """Run ``fn(*args)`` in ``processes`` spawned ranks (gloo on CPU, nccl on GPUs, one GPU per
    rank); returns rank 0's result. ``fn`` must be a module-level function (it is pickled).

    Each rank gets ``threads // processes`` CPU threads: oversubscribed cores make gloo several
    times slower.
    """
    backend = default_backend(device)
    if backend == "nccl" and torch.cuda.device_count() < processes:
        raise ValueError(f"runtime.distributed.processes={processes} but only "
                         f"{torch.cuda.device_count()} CUDA device(s): one process per GPU.")
    threads = max(1, torch.get_num_threads() // processes)
    logger.info("Training in %d processes (%s, %d thread(s) each)", processes, backend, threads)
    with tempfile.TemporaryDirectory(prefix="ft_ddp_") as tmp:
        result_path = str(Path(tmp) / "rank0.pickle")
        mp.spawn(_rank_main, nprocs=processes, join=True,
                 args=(processes, _free_port(), backend, threads, fn, args, result_path))
        with open(result_path, "rb") as file:  # private temp file, written by our rank 0 above
            return pickle.load(file)
