"""An exponential moving average of the weights (timm's ModelEmaV2) as a callback: updated after
every optimizer step, scored on the validation split every epoch, kept at the end of training
when its best epoch beats the raw weights' best epoch.

``ema = decay * ema + (1 - decay) * model`` for every floating-point entry of the state dict,
buffers (BatchNorm running statistics) included; integer buffers (``num_batches_tracked``) are
copied. With ``warmup`` the decay of update t is ``min(decay, (1 + t) / (10 + t))``, so a
run of few steps is not dominated by the initial weights.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import torch

from ft_pipelines.core.training.distributed import rank0_decides
from ft_pipelines.core.training.trainer import Callback, Trainer

logger = logging.getLogger(__name__)


def _key(row: dict) -> tuple[float, float]:
    """How epochs are ranked (as BestModel does): validation accuracy, ties: lower loss."""
    return (row["val_acc"], -row["val_loss"])


class ModelEma(Callback):
    """EMA of ``trainer.model``'s state dict; see the module docstring. ``raw_best``: the score
    of the raw weights the trainer holds at the end (a best-epoch callback's); by default the
    last epoch's."""

    def __init__(self, decay: float = 0.999, warmup: bool = False,
                 raw_best: Callable[[], tuple[float, float] | None] | None = None) -> None:
        if not 0 < decay < 1:
            raise ValueError(f"ema.decay={decay}: must be in (0, 1) (finetune.ema.decay)")
        self.decay, self.warmup, self.raw_best = decay, warmup, raw_best
        self.updates = 0
        self.shadow: dict[str, torch.Tensor] = {}
        self.best: dict[str, torch.Tensor] = {}
        self.best_key: tuple[float, float] | None = None
        self.best_epoch = -1
        self._pairs: tuple | None = None

    def on_train_start(self, trainer: Trainer) -> None:
        # before a checkpoint callback's on_train_start, which may load a saved EMA over it
        self.shadow = {k: v.detach().clone() for k, v in trainer.model.state_dict().items()}
        self._pairs = None

    def current_decay(self) -> float:
        if self.warmup:
            return min(self.decay, (1 + self.updates) / (10 + self.updates))
        return self.decay

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        """One EMA step towards ``model``'s current weights and buffers."""
        if self._pairs is None:  # the same tensors every step: look them up once
            live = model.state_dict()
            floats = [k for k, v in self.shadow.items() if v.is_floating_point()]
            self._pairs = ([self.shadow[k] for k in floats], [live[k] for k in floats],
                           [(self.shadow[k], live[k]) for k in self.shadow if k not in floats])
        ema, live, others = self._pairs
        torch._foreach_lerp_(ema, live, 1.0 - self.current_decay())
        for mine, theirs in others:
            mine.copy_(theirs)
        self.updates += 1

    def on_batch_end(self, trainer: Trainer, epoch: int, batch: int, stats: dict) -> None:
        self.update(trainer.model)  # called once per optimizer step

    def on_epoch_end(self, trainer: Trainer, epoch: int, row: dict) -> None:
        scores = trainer.evaluate_state(self.shadow)
        row["ema_val_loss"], row["ema_val_acc"] = scores["val_loss"], scores["val_acc"]
        key = _key(scores)
        if rank0_decides(self.best_key is None or key > self.best_key):
            self.best_key, self.best_epoch = key, epoch
            self.best = {k: v.clone() for k, v in self.shadow.items()}

    def on_train_end(self, trainer: Trainer) -> None:
        if self.raw_best is not None:
            raw = self.raw_best()
        else:
            raw = _key(trainer.history[-1]) if trainer.history else None
        keep = rank0_decides(self.best_key is not None and (raw is None or self.best_key > raw))
        trainer.summary["ema_kept"] = bool(keep)
        if keep:
            trainer.model.load_state_dict(self.best)
            logger.info("Keeping the EMA weights of epoch %d (validation acc %.4f, loss %.4f): "
                        "better than the raw weights' best", self.best_epoch + 1,
                        self.best_key[0], -self.best_key[1])
        else:
            logger.info("EMA weights not kept: the raw weights validate at least as well")

    def state_dict(self) -> dict[str, Any]:
        tensors = {f"shadow.{k}": v for k, v in self.shadow.items()}
        tensors.update({f"best.{k}": v for k, v in self.best.items()})
        return {"tensors": tensors, "updates": self.updates, "best_key": self.best_key,
                "best_epoch": self.best_epoch}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        tensors = state["tensors"]
        # new tensors (a rollback keeps the old ones), on the device of the live weights
        devices = {k: v.device for k, v in self.shadow.items()}
        self.shadow = {k[7:]: v.to(devices.get(k[7:], v.device)).clone()
                       for k, v in tensors.items() if k.startswith("shadow.")}
        self._pairs = None
        self.best = {k[5:]: v.clone() for k, v in tensors.items() if k.startswith("best.")}
        self.updates = int(state["updates"])
        self.best_key = tuple(state["best_key"]) if state["best_key"] else None
        self.best_epoch = int(state["best_epoch"])

