"""Training checkpoints without pickle: tensors in safetensors, everything else in JSON, and the
callback that saves one after every epoch and resumes from it."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from ft_pipelines.core.training.trainer import Callback, Trainer
from ft_pipelines.core.utils import atomic_write

logger = logging.getLogger(__name__)

TENSORS = "state.safetensors"
META = "meta.json"


def save_checkpoint(
    directory: str | Path, tensors: dict[str, torch.Tensor], meta: dict[str, Any]
) -> None:
    """Write tensors then meta, each atomically; meta last, so a complete meta means a complete
    checkpoint (a run killed while saving leaves the previous one readable)."""
    directory = Path(directory)
    tensors = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    atomic_write(directory / TENSORS, lambda tmp: save_file(tensors, tmp))
    text = json.dumps(meta)
    atomic_write(directory / META, lambda tmp: Path(tmp).write_text(text))


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


class Checkpointing(Callback):
    """Save everything needed to continue after each epoch; at the start of training, resume from
    the last checkpoint in ``directory`` (if any).

    Must come after the callbacks whose state it saves (best model, early stopping).
    """

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)

    def on_epoch_end(self, trainer: Trainer, epoch: int, row: dict) -> None:
        if not trainer.is_main:  # data-parallel ranks hold the same state: rank 0 writes it
            return
        tensors = {f"model.{k}": v for k, v in trainer.model.state_dict().items()}
        optim_tensors, optim_meta = flatten_optimizer(trainer.optimizer)
        tensors.update(optim_tensors)
        meta = {"epoch": epoch + 1, "history": trainer.history, "optimizer": optim_meta,
                "callbacks": {}}
        for i, callback in enumerate(trainer.callbacks):
            state = dict(callback.state_dict())
            tensors.update({f"cb{i}.{k}": v for k, v in state.pop("tensors", {}).items()})
            meta["callbacks"][str(i)] = state
        save_checkpoint(self.directory, tensors, meta)

    def on_train_start(self, trainer: Trainer) -> None:
        """Load the last checkpoint into the trainer and set the epoch to start from."""
        loaded = load_checkpoint(self.directory)
        if loaded is None:
            return
        tensors, meta = loaded
        trainer.model.load_state_dict(
            {k[6:]: v for k, v in tensors.items() if k.startswith("model.")}
        )
        restore_optimizer(trainer.optimizer, tensors, meta["optimizer"])
        trainer.history = meta["history"]
        for i, callback in enumerate(trainer.callbacks):
            if str(i) in meta["callbacks"]:
                prefix = f"cb{i}."
                state = dict(meta["callbacks"][str(i)])
                state["tensors"] = {k[len(prefix):]: v for k, v in tensors.items()
                                    if k.startswith(prefix)}
                callback.load_state_dict(state)
        trainer.start_epoch = int(meta["epoch"])
        logger.info("Resuming from %s after epoch %d", self.directory, meta["epoch"])
