"""Training checkpoints without pickle, one file per checkpoint, and the callback that saves one
after every epoch and resumes from it.

A checkpoint is ONE safetensors file: model weights, optimizer tensors and every callback's
tensors, with the rest (epoch, history, optimizer scalars, callback state, the stop flag) as JSON
in the file's metadata. It replaces the previous one in a single ``os.replace``, so a run killed
at any instant leaves either the previous epoch's checkpoint or this one, never a mix. A file
that cannot be used (truncated, another format, another network) is renamed
``*.unusable-<time>`` with a warning and training starts over; nothing is loaded half.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from ft_pipelines.core.training.distributed import rank0_decides
from ft_pipelines.core.training.trainer import Callback, Trainer
from ft_pipelines.core.utils import atomic_write

logger = logging.getLogger(__name__)

CHECKPOINT_FILE = "checkpoint.safetensors"
CHECKPOINT_FORMAT = "ft_pipelines.checkpoint.v2"  # bump when the layout below changes


class UnusableCheckpoint(ValueError):
    """A checkpoint file exists but cannot be resumed from."""


def save_checkpoint(
    directory: str | Path, tensors: dict[str, torch.Tensor], meta: dict[str, Any]
) -> Path:
    """Write (or replace) ``directory/checkpoint.safetensors`` atomically; returns its path."""
    path = Path(directory) / CHECKPOINT_FILE
    tensors = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    header = {"format": CHECKPOINT_FORMAT, "meta": json.dumps(meta)}
    atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=header))
    return path


def load_checkpoint(directory: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]] | None:
    """``(tensors, meta)``, None when there is no checkpoint; raises UnusableCheckpoint when the
    file is unreadable or not a checkpoint of this format."""
    path = Path(directory) / CHECKPOINT_FILE
    if not path.is_file():
        return None
    try:
        with safe_open(str(path), framework="pt") as handle:
            header = handle.metadata() or {}
            if header.get("format") != CHECKPOINT_FORMAT:
                raise UnusableCheckpoint(f"format {header.get('format')!r}, expected "
                                         f"{CHECKPOINT_FORMAT!r}")
            meta = json.loads(header["meta"])
            tensors = {name: handle.get_tensor(name) for name in handle.keys()}  # noqa: SIM118
    except UnusableCheckpoint:
        raise
    except Exception as error:  # safetensors reports a truncated file in several ways
        raise UnusableCheckpoint(f"cannot be read ({error})") from error
    return tensors, meta


def set_aside(path: Path, reason: str) -> Path:
    """Rename an unusable checkpoint out of the way (kept for inspection, never loaded again)."""
    aside = path.with_name(f"{path.name}.unusable-{time.strftime('%Y%m%dT%H%M%S')}")
    path.rename(aside)
    logger.warning("Checkpoint %s cannot be used (%s): moved to %s; training starts over.",
                   path, reason, aside)
    return aside


# Checkpoints whose training has finished, per thread: the caller removes them once it has
# stored the result (a Kedro hook after the node's outputs are saved), so a run killed between
# the end of training and the save still finds them.
_finished = threading.local()


def take_finished_checkpoints() -> list[Path]:
    """The checkpoint folders of the trainings finished in this thread since the last call."""
    folders = list(getattr(_finished, "folders", []))
    _finished.folders = []
    return folders


def report_finished_checkpoints(folders: list[Path]) -> None:
    """Add folders finished elsewhere (a spawned rank 0) to this thread's list."""
    if not hasattr(_finished, "folders"):
        _finished.folders = []
    _finished.folders.extend(folders)


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


def _callback_names(trainer: Trainer) -> list[str]:
    """A stable name per callback (class name, numbered if repeated): the position would shift
    when an optional callback such as the progress bar is added or left out."""
    names, seen = [], {}
    for callback in trainer.callbacks:
        kind = type(callback).__name__
        seen[kind] = seen.get(kind, -1) + 1
        names.append(f"{kind}{seen[kind] or ''}")
    return names


def _check_model_tensors(model: torch.nn.Module, weights: dict[str, torch.Tensor]) -> None:
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    found = {k: tuple(v.shape) for k, v in weights.items()}
    if expected != found:
        wrong = sorted(k for k in expected.keys() | found.keys() if expected.get(k) != found.get(k))
        raise UnusableCheckpoint(f"it belongs to another network ({len(wrong)} tensors differ "
                                 f"in name or shape, e.g. {wrong[0]})")


class Checkpointing(Callback):
    """Save everything needed to continue after each epoch; at the start of training, resume from
    the checkpoint in ``directory`` (if any).

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
                "stop": trainer.stop, "callbacks": {}}
        for name, callback in zip(_callback_names(trainer), trainer.callbacks, strict=True):
            state = dict(callback.state_dict())
            tensors.update({f"cb.{name}.{k}": v for k, v in state.pop("tensors", {}).items()})
            meta["callbacks"][name] = state
        save_checkpoint(self.directory, tensors, meta)

    def on_train_start(self, trainer: Trainer) -> None:
        """Load the checkpoint into the trainer and set the epoch to start from; set an unusable
        one aside, leaving the trainer exactly as it was. Under data parallelism rank 0 decides
        whether to resume (and sets a bad file aside); the other ranks then load that file."""
        path = self.directory / CHECKPOINT_FILE
        resumed = self._resume(trainer) if trainer.is_main else False
        if not rank0_decides(resumed):
            return
        if not trainer.is_main:
            loaded = load_checkpoint(self.directory)
            if loaded is None:  # rank 0 read it a moment ago: the folder is not shared
                raise UnusableCheckpoint(f"{path} is missing on rank {trainer.rank}: the ranks "
                                         "must share finetune.checkpoint_dir (one file system)")
            self._restore(trainer, *loaded)
        logger.info("Resuming from %s after epoch %d", path, trainer.start_epoch)

    def _resume(self, trainer: Trainer) -> bool:
        """Load the checkpoint if there is a usable one; whether the trainer now resumes."""
        path = self.directory / CHECKPOINT_FILE
        snapshot = self._snapshot(trainer)
        try:
            loaded = load_checkpoint(self.directory)
            if loaded is None:
                return False
            self._restore(trainer, *loaded)
        except Exception as error:  # anything wrong with the file: never continue from half
            self._rollback(trainer, snapshot)
            set_aside(path, str(error))
            return False
        return True

    def on_train_end(self, trainer: Trainer) -> None:
        report_finished_checkpoints([self.directory])

    def _restore(self, trainer: Trainer, tensors: dict[str, torch.Tensor], meta: dict) -> None:
        weights = {k[6:]: v for k, v in tensors.items() if k.startswith("model.")}
        _check_model_tensors(trainer.model, weights)
        if not 1 <= int(meta["epoch"]) <= trainer.config.epochs:
            raise UnusableCheckpoint(f"epoch {meta['epoch']} is outside 1..{trainer.config.epochs}")
        trainer.model.load_state_dict(weights)
        restore_optimizer(trainer.optimizer, tensors, meta["optimizer"])
        for name, callback in zip(_callback_names(trainer), trainer.callbacks, strict=True):
            if name in meta["callbacks"]:
                prefix = f"cb.{name}."
                state = dict(meta["callbacks"][name])
                state["tensors"] = {k[len(prefix):]: v for k, v in tensors.items()
                                    if k.startswith(prefix)}
                callback.load_state_dict(state)
        trainer.history = list(meta["history"])
        trainer.stop = bool(meta["stop"])
        trainer.start_epoch = int(meta["epoch"])

    @staticmethod
    def _snapshot(trainer: Trainer) -> dict[str, Any]:
        return {
            "model": {k: v.detach().clone() for k, v in trainer.model.state_dict().items()},
            "optimizer": trainer.optimizer.state_dict(),
            "callbacks": [callback.state_dict() for callback in trainer.callbacks],
        }

    @staticmethod
    def _rollback(trainer: Trainer, snapshot: dict[str, Any]) -> None:
        trainer.model.load_state_dict(snapshot["model"])
        trainer.optimizer.load_state_dict(snapshot["optimizer"])
        for callback, state in zip(trainer.callbacks, snapshot["callbacks"], strict=True):
            callback.load_state_dict(state)
        trainer.history, trainer.stop, trainer.start_epoch = [], False, 0
