"""``runtime``: how every loop runs (device, precision, threads, processes)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from ft_pipelines.params.base import Count, Device, Schema


class DistributedParams(Schema):
    processes: Count = 1                    # 1: one process; N: data-parallel processes
    # seconds any collective or barrier may wait for the other ranks before the run ends with
    # an error naming the stage and the rank (never a silent hang)
    timeout_s: float = Field(300.0, gt=0)


class RuntimeParams(Schema):
    device: Device = "auto"                 # auto | cpu | cuda | cuda:N
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    threads: Count | None = None            # null: all cores (or OMP_NUM_THREADS when set)
    distributed: DistributedParams = Field(default_factory=DistributedParams)
