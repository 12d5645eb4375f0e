"""Which process of a launched data-parallel run this is (torchrun sets RANK and WORLD_SIZE)."""

from __future__ import annotations

import os


def launched_world_size() -> int:
    """How many processes torchrun (or another launcher setting WORLD_SIZE) started; 1 if none."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def launched_rank() -> int:
    """This process's rank when a launcher started several; 0 otherwise."""
    return int(os.environ.get("RANK", "0")) if launched_world_size() > 1 else 0
