"""Training checkpoints without pickle: tensors in safetensors, everything else in JSON."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

TENSORS = "state.safetensors"
META = "meta.json"


def _atomic_write(path: Path, write) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    os.close(fd)
    write(tmp)
    os.replace(tmp, path)


def save_checkpoint(
    directory: str | Path, tensors: dict[str, torch.Tensor], meta: dict[str, Any]
) -> None:
    """Write tensors then meta, each atomically; meta last, so a complete meta means a complete
    checkpoint (a run killed while saving leaves the previous one readable)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    _atomic_write(directory / TENSORS, lambda tmp: save_file(tensors, tmp))
    text = json.dumps(meta)
    _atomic_write(directory / META, lambda tmp: Path(tmp).write_text(text))


def load_checkpoint(directory: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]] | None:
    """``(tensors, meta)`` or None when there is no complete checkpoint."""
    directory = Path(directory)
    if not (directory / META).is_file() or not (directory / TENSORS).is_file():
        return None
    return load_file(str(directory / TENSORS)), json.loads((directory / META).read_text())


def flatten_optimizer(optimizer: torch.optim.Optimizer) -> tuple[dict, dict]:
    """Optimizer state as (tensors keyed ``optim.<param>.<key>``, JSON-able rest)."""
    state = optimizer.state_dict()
    tensors, scalars = {}, {}
    for pid, values in state["state"].items():
        for key, value in values.items():
            if torch.is_tensor(value):
                tensors[f"optim.{pid}.{key}"] = value
            else:
                scalars[f"{pid}.{key}"] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def restore_optimizer(
    optimizer: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], meta: dict[str, Any]
) -> None:
    state: dict[int, dict[str, Any]] = {}
    for name, value in tensors.items():
        if name.startswith("optim."):
            _, pid, key = name.split(".", 2)
            state.setdefault(int(pid), {})[key] = value
    for name, value in meta["scalars"].items():
        pid, key = name.split(".", 1)
        state.setdefault(int(pid), {})[key] = value
    optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})
