"""How this process runs: the CPU thread count (applied) and the environment (recorded).

Thread counts change results (reduction order) and every timing, so a run sets them from
``runtime.threads`` and its lineage records them. Not Kedro-specific: any entry point may call
``apply_threads`` before work starts."""

from __future__ import annotations

import logging
import os
import platform
from typing import Any

import torch

import ft_pipelines
from ft_pipelines.core.utils.fingerprint import package_version

logger = logging.getLogger(__name__)

THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")
# The caller's choice, read before this module ever writes the variable.
_INHERITED_OMP = os.environ.get("OMP_NUM_THREADS")
LIBRARIES = ("torch", "torchvision", "timm", "torch-pruning", "kedro", "numpy", "pydantic")


def available_cores() -> int:
    """CPU cores this process may run on (its affinity, e.g. a container's cpuset)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def resolve_threads(threads: int | None) -> int:
    """``runtime.threads``; null: ``OMP_NUM_THREADS`` when the caller set it, else all cores."""
    if threads is not None:
        return int(threads)
    if _INHERITED_OMP and _INHERITED_OMP.isdigit() and int(_INHERITED_OMP) >= 1:
        return int(_INHERITED_OMP)
    return available_cores()


def apply_threads(threads: int | None) -> int:
    """Set torch's intra- and inter-op threads, and the variables child processes read."""
    count = resolve_threads(threads)
    torch.set_num_threads(count)
    if torch.get_num_interop_threads() != count:
        try:
            torch.set_num_interop_threads(count)
        except RuntimeError:  # settable once, before any inter-op work: keep what is set
            logger.debug("Inter-op threads stay %d (already in use)",
                         torch.get_num_interop_threads())
    for variable in THREAD_VARIABLES:
        os.environ[variable] = str(count)
    logger.info("CPU threads: %d (runtime.threads=%s)", count, threads)
    return count


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _devices() -> dict[str, Any]:
    cuda = torch.cuda.is_available()
    return {
        "auto_resolves_to": "cuda" if cuda else "cpu",
        "cuda_available": cuda,
        "cuda_version": torch.version.cuda,
        "cuda_devices": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
        if cuda else [],
    }


def environment_record() -> dict[str, Any]:
    """What a run's results depend on beyond its data and parameters."""
    return {
        "threads": {"intra_op": torch.get_num_threads(),
                    "inter_op": torch.get_num_interop_threads(),
                    **{v: os.environ.get(v) for v in THREAD_VARIABLES}},
        "device": _devices(),
        "versions": {"ft_pipelines": ft_pipelines.__version__, "python": platform.python_version(),
                     **{name: package_version(name) for name in LIBRARIES}},
        "platform": platform.platform(),
        "cpu": {"model": cpu_model(), "available_cores": available_cores(),
                "logical_cores": os.cpu_count()},
    }
