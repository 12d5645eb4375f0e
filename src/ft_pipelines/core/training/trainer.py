"""The training loop: a small core, optional behaviour as callbacks (``callbacks.py``,
``checkpoint.py``), the frozen-prefix cache at the freeze boundary for speed (``cache.py``).

Inputs are uint8 image tensors decoded once (core.data); normalisation and augmentation happen
per batch. Every epoch reseeds the RNGs from (seed, epoch), so an epoch's shuffling, augmentation
and dropout do not depend on what ran before it: a resumed run equals an uninterrupted one.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from ft_pipelines.core.data import ImageData
from ft_pipelines.core.regularizers import CompositeRegularizer, Regularizer
from ft_pipelines.core.training.cache import SplitModel, frozen_prefix_length, prefix_activations
from ft_pipelines.core.training.config import TrainConfig
from ft_pipelines.core.training.distributed import (
    all_reduce_sum,
    backend_name,
    broadcast_buffers,
    rank0_decides,
    rank_slice,
    set_activity,
    world,
    wrap_data_parallel,
)
from ft_pipelines.core.training.optim import build_optimizer, lr_factor
from ft_pipelines.core.utils import normalise

logger = logging.getLogger(__name__)


def seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)


def build_augmentation(
    spec: dict[str, Any], size: int
) -> Callable[[torch.Tensor], torch.Tensor] | None:
    """Per-sample torchvision v2 augmentation on uint8 tensors, or None when nothing is enabled."""
    from torchvision.transforms import v2

    steps = []
    crop = spec.get("random_resized_crop")
    if crop:
        scale = tuple(crop.get("scale", (0.7, 1.0)))
        steps.append(v2.RandomResizedCrop(size, scale=scale, antialias=True))
    if spec.get("horizontal_flip"):
        steps.append(v2.RandomHorizontalFlip())
    if not steps:
        return None
    transform = v2.Compose(steps)
    # v2 draws one set of parameters per call: apply per sample, not per batch.
    return lambda batch: torch.stack([transform(img) for img in batch])


def set_frozen_batchnorm_eval(model: nn.Module) -> None:
    """BN layers whose parameters are frozen keep their pretrained running statistics."""
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            params = list(module.parameters(recurse=False))
            if params and not any(p.requires_grad for p in params):
                module.eval()


class Callback:
    """Optional behaviour plugged into ``Trainer``; every hook is a no-op."""

    def on_train_start(self, trainer: Trainer) -> None: ...
    def on_epoch_start(self, trainer: Trainer, epoch: int) -> None: ...
    def on_batch_end(self, trainer: Trainer, epoch: int, batch: int, stats: dict) -> None: ...
    def on_epoch_end(self, trainer: Trainer, epoch: int, row: dict) -> None: ...
    def on_train_end(self, trainer: Trainer) -> None: ...

    def state_dict(self) -> dict[str, Any]:
        """What a checkpoint must keep to continue: JSON-able values, tensors under "tensors"."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Take back what :meth:`state_dict` returned."""


class Trainer:
    """Cross-entropy + an optional regulariser, two learning rates, callbacks around the loop."""

    def __init__(
        self,
        model: nn.Module,
        config: TrainConfig,
        regularizer: Regularizer | None = None,
        callbacks: Sequence[Callback] = (),
        new_param_names: set[str] | None = None,
    ) -> None:
        self.model, self.config = model, config
        # no regulariser: an empty composite (named "none", zero penalty), so no special case
        self.regularizer = regularizer if regularizer is not None else CompositeRegularizer([])
        self.callbacks = list(callbacks)
        self.new_param_names = set(new_param_names or ())
        self.runtime = config.resolved_runtime()
        self.device = self.runtime.device
        self.rank, self.world_size = world()  # several under torchrun or spawned processes
        self.history: list[dict] = []
        self.stop = False
        self.steps_per_epoch = 0
        self.start_epoch = 0  # a checkpoint callback moves it on when resuming
        self.optimizer: torch.optim.Optimizer | None = None

    @property
    def is_main(self) -> bool:
        """Rank 0 (or the only process): the one that writes files."""
        return self.rank == 0

    def _call(self, hook: str, *args: Any) -> None:
        for callback in self.callbacks:
            getattr(callback, hook)(self, *args)

    def _prepare_inputs(self, train: ImageData, val: ImageData):
        """(network, train inputs, val inputs, per-batch transform) with or without the cache."""
        cfg = self.model.backbone_cfg
        augment = build_augmentation(self.config.augment, cfg.input_size)
        boundary = frozen_prefix_length(self.model) if self.config.use_cache else 0
        if augment is None and self.config.use_cache and self.regularizer.needs_inputs:
            # fixed inputs: what the regulariser derives from them (DELTA's reference maps) is
            # computed once, after which it may no longer need the images (see the cache below)
            self.regularizer.precompute_reference(
                normalise(self.runtime.to_device(train.images[:]), cfg.mean, cfg.std)
            )
        if (
            augment is None
            and boundary > 0
            and not self.regularizer.needs_inputs
        ):
            logger.info("Caching activations of the %d frozen leading units", boundary)
            bs = self.config.batch_size  # a larger batch here only raises peak memory
            train_x = prefix_activations(self.model, train, boundary, bs, self.device)
            val_x = prefix_activations(self.model, val, boundary, bs, self.device)
            return SplitModel(self.model, boundary), train_x, val_x, None

        def transform(batch: torch.Tensor, training: bool) -> torch.Tensor:
            if training and augment is not None:
                batch = augment(batch)
            return normalise(batch, cfg.mean, cfg.std)

        return self.model, train.images, val.images, transform

    def fit(self, train: ImageData, val: ImageData) -> pd.DataFrame:
        """Train, select the best epoch on ``val``; returns one history row per epoch, with
        where it ran (:meth:`world_columns`)."""
        self.runtime.prepare(self.model)
        net, train_x, val_x, transform = self._prepare_inputs(train, val)
        self.regularizer.attach(self.model)
        exempt = self.regularizer.decay_exempt()
        self.optimizer = build_optimizer(self.model, self.config, self.new_param_names, exempt)
        self.scaler = self.runtime.grad_scaler()
        train_net = wrap_data_parallel(net, self.device)  # averages gradients over the ranks
        self.steps_per_epoch = math.ceil(len(train) / self.config.batch_size)
        self.start_epoch = 0
        self._call("on_train_start")
        try:
            for epoch in range(self.start_epoch, self.config.epochs):
                if self.stop:
                    break
                self._call("on_epoch_start", epoch)
                set_activity(f"training epoch {epoch + 1} of {self.config.epochs}")
                row = self._train_epoch(train_net, train_x, train.labels, transform, epoch)
                set_activity(f"validating epoch {epoch + 1} of {self.config.epochs}")
                row.update(self._evaluate(net, val_x, val.labels, transform))
                self.history.append(row)
                self._call("on_epoch_end", epoch, row)
                self.stop = rank0_decides(self.stop)  # e.g. early stopping: rank 0's call
        finally:
            self.regularizer.detach()
        self._call("on_train_end")
        broadcast_buffers(self.model)  # every rank hands back rank 0's model
        # resumed_after_epoch: 0 for a fresh run, k when it continued from epoch k's checkpoint
        return pd.DataFrame(self.history).assign(**self.world_columns(),
                                                 resumed_after_epoch=self.start_epoch)

    def world_columns(self) -> dict[str, Any]:
        """Where this training ran: processes, backend, device, precision."""
        return {"processes": self.world_size, "backend": backend_name(),
                "device": str(self.device), "precision": self.runtime.precision}

    def _train_epoch(
        self, net: nn.Module, inputs: torch.Tensor, labels: torch.Tensor, transform, epoch: int
    ) -> dict:
        config = self.config
        seed_everything(config.seed * 1000 + epoch)
        order = torch.randperm(
            len(labels), generator=torch.Generator().manual_seed(config.seed * 1000 + epoch)
        )
        net.train()
        set_frozen_batchnorm_eval(self.model)
        sums = {"loss": 0.0, "correct": 0, "reg": 0.0, "seen": 0}
        started = time.perf_counter()
        for batch_index, start in enumerate(range(0, len(order), config.batch_size)):
            idx, weight = order[start : start + config.batch_size], 1.0
            if self.world_size > 1:
                idx, weight = rank_slice(idx, self.rank, self.world_size)
            x = self.runtime.to_device(inputs[idx])
            y = self.runtime.to_device(labels[idx])
            if transform is not None:
                x = transform(x, True)
            self.regularizer.select(idx)
            factor = lr_factor(
                config, epoch * self.steps_per_epoch + batch_index, self.steps_per_epoch
            )
            for group in self.optimizer.param_groups:
                group["lr"] = group["base_lr"] * factor
            with self.runtime.autocast():
                logits = net(x)
                if self.world_size == 1:
                    loss = nn.functional.cross_entropy(
                        logits, y, label_smoothing=config.label_smoothing
                    )
                    objective = loss
                else:  # this rank's share of the global batch mean (see rank_slice)
                    summed = nn.functional.cross_entropy(
                        logits, y, reduction="sum", label_smoothing=config.label_smoothing
                    )
                    loss, objective = summed.detach() / len(idx), summed * weight
                reg = self.regularizer.penalty(self.model, x)
            total = objective + reg
            if not torch.isfinite(total):
                raise FloatingPointError(
                    f"Loss became {total.item()} at epoch {epoch + 1}, batch {batch_index + 1} "
                    f"(cross-entropy {loss.item()}, regulariser {reg.item()}). The last good "
                    "checkpoint is kept; lower the learning rate or the regulariser weight."
                )
            self.optimizer.zero_grad(set_to_none=True)
            self.scaler.scale(total).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
            n = len(idx) if weight else 0  # a weight-0 stand-in sample is not counted
            sums["loss"] += loss.item() * n
            sums["reg"] += reg.item() * n
            sums["correct"] += int((logits.argmax(1) == y).sum()) if n else 0
            sums["seen"] += n
            elapsed = time.perf_counter() - started
            self._call(
                "on_batch_end",
                epoch,
                batch_index,
                {
                    "loss": sums["loss"] / sums["seen"],
                    "acc": sums["correct"] / sums["seen"],
                    "reg": sums["reg"] / sums["seen"],
                    "images_per_s": sums["seen"] / elapsed,
                },
            )
        keys = ("loss", "reg", "correct", "seen")
        sums = dict(zip(keys, all_reduce_sum([sums[k] for k in keys], self.device), strict=True))
        seconds = time.perf_counter() - started
        return {
            "epoch": epoch + 1,
            "train_loss": sums["loss"] / sums["seen"],
            "train_acc": sums["correct"] / sums["seen"],
            "reg_term": sums["reg"] / sums["seen"],
            "lr": self.optimizer.param_groups[0]["lr"],
            "seconds": seconds,
            "images_per_s": sums["seen"] / seconds,
        }

    @torch.inference_mode()
    def _evaluate(
        self, net: nn.Module, inputs: torch.Tensor, labels: torch.Tensor, transform
    ) -> dict:
        broadcast_buffers(self.model)  # the ranks score one model: rank 0's BN statistics
        net.eval()
        loss_sum, correct = 0.0, 0
        # each rank scores its contiguous part (slices: views, no copies); the sums are added
        sizes = [len(p) for p in torch.arange(len(labels)).tensor_split(self.world_size)]
        first = sum(sizes[: self.rank])
        last = first + sizes[self.rank]
        for start in range(first, last, 256):
            x = self.runtime.to_device(inputs[start : min(start + 256, last)])
            y = self.runtime.to_device(labels[start : min(start + 256, last)])
            if transform is not None:
                x = transform(x, False)
            with self.runtime.autocast():
                logits = net(x)
            loss_sum += nn.functional.cross_entropy(logits.float(), y, reduction="sum").item()
            correct += int((logits.argmax(1) == y).sum())
        loss_sum, correct = all_reduce_sum([loss_sum, correct], self.device)
        n = max(1, len(labels))
        return {"val_loss": loss_sum / n, "val_acc": correct / n}
