"""Where and in which precision the loops run (``runtime.device``, ``runtime.precision``).

One resolved :class:`Runtime` per loop: the device, the autocast context, the GradScaler (fp16
only), channels_last models and image batches (on GPUs and on CPU: oneDNN's depthwise and 1x1
convolutions train ~1.6x faster in it on 2 cores, benchmarks/bench_memory_format.py), pinned
host memory with non-blocking copies. ``auto`` precision is
bf16 autocast on CUDA devices that support it and fp32 elsewhere. bf16 on CPU is allowed (CPU
autocast supports it; slower than fp32 on most CPUs but useful to check a GPU setting on a
laptop); fp16 needs CUDA (a GradScaler on CPU buys nothing).
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Literal

import torch
from pydantic import Field
from torch import nn

from ft_pipelines.core.utils.schema import Count, Device, Schema

PRECISIONS = ("auto", "fp32", "bf16", "fp16")


class DistributedParams(Schema):
    processes: Count = 1                    # 1: one process; N: data-parallel processes
    # seconds any collective or barrier may wait for the other ranks before the run ends with
    # an error naming the stage and the rank (never a silent hang)
    timeout_s: float = Field(300.0, gt=0)


class RuntimeParams(Schema):
    """``runtime``: how every loop runs (device, precision, threads, processes)."""

    device: Device = "auto"                 # auto | cpu | cuda | cuda:N
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    threads: Count | None = None            # null: all cores (or OMP_NUM_THREADS when set)
    distributed: DistributedParams = Field(default_factory=DistributedParams)
_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def resolve_device(name: str = "auto") -> torch.device:
    """``auto | cpu | cuda | cuda:N`` as a torch device; CUDA asked for but absent is an error."""
    name = str(name)
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    if not name.startswith("cuda"):
        raise ValueError(f"runtime.device={name!r}: use auto, cpu, cuda or cuda:N")
    if not torch.cuda.is_available():
        raise ValueError(
            f"runtime.device={name!r} but this torch build sees no CUDA device "
            f"(torch {torch.__version__}, CUDA {torch.version.cuda}): set runtime.device: cpu "
            "or auto, or install a CUDA build of torch on a machine with a GPU."
        )
    device = torch.device(name)
    if device.index is not None and device.index >= torch.cuda.device_count():
        raise ValueError(f"runtime.device={name!r}: only {torch.cuda.device_count()} CUDA "
                         "device(s) here (cuda:0 ...).")
    return device


def resolve_precision(precision: str, device: torch.device) -> str:
    """``auto`` -> bf16 on CUDA devices with bf16, else fp32; fp16 without CUDA is an error."""
    if precision not in PRECISIONS:
        raise ValueError(f"runtime.precision={precision!r}: use one of {', '.join(PRECISIONS)}")
    if precision == "auto":
        cuda = device.type == "cuda" and torch.cuda.is_bf16_supported()
        return "bf16" if cuda else "fp32"
    if precision == "fp16" and device.type != "cuda":
        raise ValueError("runtime.precision=fp16 needs a CUDA device (runtime.device is "
                         f"{device}); use bf16 or fp32 on CPU.")
    return precision


@dataclass(frozen=True)
class Runtime:
    """A resolved device + precision and the helpers every loop uses with them."""

    device: torch.device
    precision: str  # fp32 | bf16 | fp16 (resolved)

    @property
    def on_gpu(self) -> bool:
        return self.device.type == "cuda"

    def autocast(self) -> AbstractContextManager:
        """Mixed precision for forward passes (a no-op context in fp32)."""
        dtype = _DTYPES.get(self.precision)
        return torch.autocast(self.device.type, dtype=dtype, enabled=dtype is not None)

    def grad_scaler(self) -> torch.amp.GradScaler:
        """Loss scaling, enabled for fp16 only (bf16 has fp32's exponent range)."""
        return torch.amp.GradScaler(self.device.type, enabled=self.precision == "fp16")

    def prepare(self, model: nn.Module) -> nn.Module:
        """Move the model to the device in channels_last (faster convolutions on GPU and CPU).

        Saving is unaffected: artifacts and checkpoints store contiguous copies."""
        return model.to(self.device, memory_format=torch.channels_last)

    def to_device(self, tensor: torch.Tensor) -> torch.Tensor:
        """Host -> device (pinned memory and a non-blocking copy on GPUs); image batches in
        channels_last, like the model :meth:`prepare` returns."""
        if self.on_gpu and tensor.device.type != "cuda":
            moved = tensor.pin_memory().to(self.device, non_blocking=True)
        else:
            moved = tensor.to(self.device)
        if moved.dim() == 4 and moved.is_floating_point():
            moved = moved.contiguous(memory_format=torch.channels_last)
        return moved

    def synchronize(self) -> None:
        """Wait for queued GPU work (timings measure the work, not the launch)."""
        if self.on_gpu:
            torch.cuda.synchronize(self.device)

    def describe(self) -> dict[str, Any]:
        return {"device": str(self.device), "precision": self.precision}


def resolve_runtime(params: RuntimeParams | dict[str, Any] | None = None) -> Runtime:
    """A :class:`Runtime` from the ``runtime`` parameters block (or its defaults)."""
    params = RuntimeParams.model_validate(params or {})
    device = resolve_device(params.device)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())  # the rank's device under DDP
    return Runtime(device, resolve_precision(params.precision, device))
