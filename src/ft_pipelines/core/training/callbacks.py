"""The stock callbacks (Lightning style): progress bar, best-epoch selection, early stopping, and
the default set (with checkpointing from ``checkpoint.py`` when a folder is given)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from ft_pipelines.core.training.checkpoint import Checkpointing
from ft_pipelines.core.training.distributed import rank0_decides, world
from ft_pipelines.core.training.ema import ModelEma
from ft_pipelines.core.training.settings import TrainConfig
from ft_pipelines.core.training.trainer import Callback, Trainer

logger = logging.getLogger(__name__)


class ProgressBar(Callback):
    """A tqdm bar per epoch: loss, accuracy, regulariser term, images/s."""

    def on_epoch_start(self, trainer: Trainer, epoch: int) -> None:
        self.bar = tqdm(
            total=trainer.steps_per_epoch,
            desc=f"epoch {epoch + 1}/{trainer.config.epochs}",
            leave=False,
            dynamic_ncols=True,
        )

    def on_batch_end(self, trainer: Trainer, epoch: int, batch: int, stats: dict) -> None:
        self.bar.update(1)
        self.bar.set_postfix(
            loss=f"{stats['loss']:.3f}",
            acc=f"{stats['acc']:.3f}",
            reg=f"{stats['reg']:.3g}",
            img_s=f"{stats['images_per_s']:.0f}",
        )

    def on_epoch_end(self, trainer: Trainer, epoch: int, row: dict) -> None:
        self.bar.close()
        logger.info(
            "epoch %d: train loss %.4f acc %.4f | val loss %.4f acc %.4f | reg %.4g | %.1f img/s",
            epoch + 1,
            row["train_loss"],
            row["train_acc"],
            row["val_loss"],
            row["val_acc"],
            row["reg_term"],
            row["images_per_s"],
        )


class BestModel(Callback):
    """Keep the weights of the epoch with the best validation accuracy (ties: lower loss)."""

    def __init__(self) -> None:
        self.best_key: tuple[float, float] | None = None
        self.best_epoch = -1
        self.state: dict[str, torch.Tensor] | None = None

    def on_epoch_end(self, trainer: Trainer, epoch: int, row: dict) -> None:
        key = (row["val_acc"], -row["val_loss"])
        if rank0_decides(self.best_key is None or key > self.best_key):
            self.best_key, self.best_epoch = key, epoch
            self.state = {k: v.detach().clone() for k, v in trainer.model.state_dict().items()}

    def state_dict(self) -> dict[str, Any]:
        return {"tensors": dict(self.state or {}), "best_key": self.best_key,
                "best_epoch": self.best_epoch}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.state = state["tensors"] or None
        self.best_key = tuple(state["best_key"]) if state["best_key"] else None
        self.best_epoch = state["best_epoch"]

    def on_train_end(self, trainer: Trainer) -> None:
        if self.state is not None:
            trainer.model.load_state_dict(self.state)
            logger.info("Selected epoch %d on the validation split", self.best_epoch + 1)


class EarlyStopping(Callback):
    """Stop when validation accuracy has not improved for ``patience`` epochs."""

    def __init__(self, patience: int) -> None:
        self.patience, self.best, self.wait = patience, -1.0, 0

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best, "wait": self.wait}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best, self.wait = state["best"], state["wait"]

    def on_epoch_end(self, trainer: Trainer, epoch: int, row: dict) -> None:
        if row["val_acc"] > self.best:
            self.best, self.wait = row["val_acc"], 0
            return
        self.wait += 1
        if self.wait >= self.patience:
            logger.info(
                "Early stopping after epoch %d (no gain for %d epochs)", epoch + 1, self.patience
            )
            trainer.stop = True


def default_callbacks(config: TrainConfig, checkpoint_dir: str | Path | None = None
                      ) -> list[Callback]:
    """Progress bar, best-epoch selection, the weights' EMA and early stopping (when configured)
    and, with a ``checkpoint_dir``, a checkpoint after every epoch (last: it saves the others'
    state). The EMA comes after BestModel: at the end it replaces the raw best when better."""
    best = BestModel()
    callbacks: list[Callback] = [best]
    if config.ema is not None:
        callbacks.append(ModelEma(**config.ema.model_dump(), raw_best=lambda: best.best_key))
    if config.patience:
        callbacks.append(EarlyStopping(config.patience))
    if config.progress and world()[0] == 0:  # one progress bar under DDP: rank 0's
        callbacks.insert(0, ProgressBar())
    if checkpoint_dir is not None:
        callbacks.append(Checkpointing(checkpoint_dir))
    return callbacks
