"""Which process of a launched data-parallel run this is (torchrun sets RANK and WORLD_SIZE), and
how a process that ends with its run exits."""

from __future__ import annotations

import atexit
import gc
import os


def launched_world_size() -> int:
    """How many processes torchrun (or another launcher setting WORLD_SIZE) started; 1 if none."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def leave_objects_to_exit() -> None:
    """At exit, freeze every object instead of letting the interpreter's last garbage collection
    walk them: with torch loaded that walk takes ~1 s, while torchrun or the spawning process
    waits for this one to end. For processes that end with their run (ranks, the CLI)."""
    atexit.register(gc.freeze)


def launched_rank() -> int:
    """This process's rank when a launcher started several; 0 otherwise."""
    return int(os.environ.get("RANK", "0")) if launched_world_size() > 1 else 0
