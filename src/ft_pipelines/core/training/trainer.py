"""The training loop: a small core, optional behaviour as callbacks (``callbacks.py``,
``checkpoint.py``), the frozen-prefix cache at the freeze boundary for speed (``cache.py``).

Inputs are uint8 image tensors decoded once (core.data); normalisation and augmentation happen
per batch. Every epoch reseeds the RNGs from (seed, epoch), so an epoch's shuffling, augmentation
and dropout do not depend on what ran before it: a resumed run equals an uninterrupted one.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import math
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from ft_pipelines.core.data import ImageData
from ft_pipelines.core.regularizers import CompositeRegularizer, Regularizer
from ft_pipelines.core.training.augment import build_augmentation, summed_loss
from ft_pipelines.core.training.balance import balanced_order, class_weights, resolve_class_balance
from ft_pipelines.core.training.cache import SplitModel, frozen_prefix_length, prefix_activations
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
from ft_pipelines.core.training.lr_find import LRFinding, lr_range_test
from ft_pipelines.core.training.optim import build_optimizer, lr_factor
from ft_pipelines.core.training.settings import TrainConfig
from ft_pipelines.core.utils import classifier_name, normalise

logger = logging.getLogger(__name__)


def seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)


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
    """Cross-entropy + an optional regulariser, two learning rates, callbacks around the loop.

    The recipe's ingredients (``TrainConfig``: layer decay, EMA, augmentation policies and
    mixup/cutmix, accumulation, class balance, the LR range test) are off by default; when off,
    nothing of theirs runs per batch.
    """

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
        # constant columns of the returned history (e.g. ema_kept), set by callbacks
        self.summary: dict[str, Any] = {}
        self.lr_finding: LRFinding | None = None  # the LR range test's curve, when it ran
        self.augmentation = None
        self.balance, self.class_weights = "none", None
        self._row_extras: dict[str, Any] = {}  # per-epoch columns the recipe adds

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
        augment = self.augmentation = build_augmentation(self.config.augment, cfg.input_size)
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
        if augment is not None and boundary > 0:
            logger.info("Frozen-prefix cache off: the augmentation (%s) changes the inputs "
                        "every epoch", augment.description)

        def transform(batch: torch.Tensor, training: bool) -> torch.Tensor:
            if training and augment is not None and augment.pixels is not None:
                batch = augment.pixels(batch)
            batch = normalise(batch, cfg.mean, cfg.std)
            if training and augment is not None and augment.erasing is not None:
                batch = augment.erasing(batch)
            return batch

        return self.model, train.images, val.images, transform

    def _prepare_loss(self, labels: torch.Tensor) -> None:
        """Class balance (weights or sampler) from the training labels; whether the loss can be
        the plain mean cross-entropy of one batch (the default: nothing else per batch)."""
        if self.config.class_balance != "none":
            self.balance, why = resolve_class_balance(self.config.class_balance, labels,
                                                      self.num_classes)
            logger.info("Class balance: %s", why)
            self._row_extras["class_balance"] = self.balance
            if self.balance == "weights":
                self.class_weights = self.runtime.to_device(class_weights(labels,
                                                                          self.num_classes))
        mixes = self.augmentation is not None and self.augmentation.mixes
        self._plain_loss = (self.world_size == 1 and self.config.accumulate == 1 and not mixes
                            and self.class_weights is None)

    @property
    def num_classes(self) -> int:
        return self.model.get_submodule(classifier_name(self.model)).out_features

    def fit(self, train: ImageData, val: ImageData) -> pd.DataFrame:
        """Train, select the best epoch on ``val``; returns one history row per epoch, with
        where it ran (:meth:`world_columns`)."""
        self.runtime.prepare(self.model)
        net, train_x, val_x, transform = self._prepare_inputs(train, val)
        self._prepare_loss(train.labels)
        self.regularizer.attach(self.model)
        exempt = self.regularizer.decay_exempt()
        self.optimizer = build_optimizer(self.model, self.config, self.new_param_names, exempt)
        self.scaler = self.runtime.grad_scaler()
        train_net = wrap_data_parallel(net, self.device)  # averages gradients over the ranks
        self._validation = (net, val_x, val.labels, transform)  # for evaluate_state
        self.steps_per_epoch = math.ceil(len(train) / self.config.batch_size)
        self.start_epoch = 0
        self._call("on_train_start")
        try:
            if self.config.lr_find:
                self._lr_find_or_recall(train_net, train_x, train.labels, transform)
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
        return pd.DataFrame(self.history).assign(**self.world_columns(), **self.summary,
                                                 resumed_after_epoch=self.start_epoch)

    def world_columns(self) -> dict[str, Any]:
        """Where this training ran: processes, backend, device, precision."""
        return {"processes": self.world_size, "backend": backend_name(),
                "device": str(self.device), "precision": self.runtime.precision}

    def evaluate_state(self, state: dict[str, torch.Tensor]) -> dict:
        """Validation loss and accuracy of other weights (e.g. an EMA) for ``self.model``;
        the model's own weights are back afterwards."""
        current = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
        self.model.load_state_dict(state)
        try:
            return self._evaluate(*self._validation)
        finally:
            self.model.load_state_dict(current)

    def _epoch_order(self, labels: torch.Tensor, epoch: int) -> torch.Tensor:
        """The epoch's sample order from (seed, epoch): a permutation, or class-balanced draws."""
        generator = torch.Generator().manual_seed(self.config.seed * 1000 + epoch)
        if self.balance == "sampler":
            return balanced_order(labels, generator)
        return torch.randperm(len(labels), generator=generator)

    def _train_epoch(
        self, net: nn.Module, inputs: torch.Tensor, labels: torch.Tensor, transform, epoch: int
    ) -> dict:
        config = self.config
        seed_everything(config.seed * 1000 + epoch)
        order = self._epoch_order(labels, epoch)
        net.train()
        set_frozen_batchnorm_eval(self.model)
        sums = {"loss": 0.0, "correct": 0, "reg": 0.0, "seen": 0}
        started = time.perf_counter()
        for batch_index, start in enumerate(range(0, len(order), config.batch_size)):
            factor = lr_factor(
                config, epoch * self.steps_per_epoch + batch_index, self.steps_per_epoch
            )
            for group in self.optimizer.param_groups:
                group["lr"] = group["base_lr"] * factor
            step = self._step(net, inputs, labels, transform,
                              order[start : start + config.batch_size], (epoch, batch_index))
            for key in sums:
                sums[key] += step[key]
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
            **self._row_extras,
        }

    def _step(self, net: nn.Module, inputs: torch.Tensor, labels: torch.Tensor, transform,
              batch: torch.Tensor, where: tuple[int, int]) -> dict:
        """One optimizer step on a global batch: this rank's slice (``rank_slice``), in
        ``accumulate`` micro-batches whose gradients add up to the batch mean's (DDP
        synchronises on the last one only). Returns this rank's sums (loss, reg, correct, seen).
        """
        idx, weight = batch, 1.0 / len(batch)
        if self.world_size > 1:
            idx, weight = rank_slice(batch, self.rank, self.world_size)
        chunks = [c for c in idx.tensor_split(self.config.accumulate) if len(c)]
        self.optimizer.zero_grad(set_to_none=True)
        sums = {"loss": 0.0, "correct": 0, "reg": 0.0, "seen": 0}
        for i, chunk in enumerate(chunks):
            last = i == len(chunks) - 1
            sync = (contextlib.nullcontext() if last or not hasattr(net, "no_sync")
                    else net.no_sync())
            with sync:
                part = self._forward_backward(net, inputs, labels, transform, chunk, weight,
                                              len(chunk) / len(idx), where)
            for key in sums:
                sums[key] += part[key]
        self.scaler.step(self.optimizer)
        self.scaler.update()
        return sums

    def _forward_backward(self, net: nn.Module, inputs: torch.Tensor, labels: torch.Tensor,
                          transform, idx: torch.Tensor, weight: float, share: float,
                          where: tuple[int, int]) -> dict:
        """Loss and backward on one (micro-)batch: ``weight`` scales its summed loss (1/batch in
        one process, ``rank_slice``'s under DDP; 0 for a stand-in sample), ``share`` its
        regulariser term (its fraction of this rank's batch)."""
        config = self.config
        x = self.runtime.to_device(inputs[idx])
        y = self.runtime.to_device(labels[idx])
        if transform is not None:
            x = transform(x, True)
        target = y
        if self.augmentation is not None and self.augmentation.mixes:
            x, target = self.augmentation.mix(x, y, self.num_classes, config.label_smoothing)
        self.regularizer.select(idx)
        with self.runtime.autocast():
            logits = net(x)
            if self._plain_loss:  # the default: exactly the mean cross-entropy of the batch
                loss = nn.functional.cross_entropy(
                    logits, y, label_smoothing=config.label_smoothing
                )
                objective = loss
            else:  # this micro-batch's share of the global batch mean (see rank_slice)
                summed = summed_loss(logits, target, self.class_weights, config.label_smoothing)
                loss, objective = summed.detach() / len(idx), summed * weight
            reg = self.regularizer.penalty(self.model, x)
            if share != 1.0:  # accumulation: the batch's regulariser term once in total
                reg = reg * share
        total = objective + reg
        if not torch.isfinite(total):
            raise FloatingPointError(
                f"Loss became {total.item()} at epoch {where[0] + 1}, batch {where[1] + 1} "
                f"(cross-entropy {loss.item()}, regulariser {reg.item()}). The last good "
                "checkpoint is kept; lower the learning rate or the regulariser weight."
            )
        self.scaler.scale(total).backward()
        n = len(idx) if weight else 0  # a weight-0 stand-in sample is not counted
        return {"loss": loss.item() * n, "reg": reg.item() / share * n,
                "correct": int((logits.argmax(1) == y).sum()) if n else 0, "seen": n}

    def _lr_find_or_recall(self, net: nn.Module, inputs: torch.Tensor, labels: torch.Tensor,
                           transform) -> None:
        """Run the LR range test on a fresh start; a resumed run keeps the rates its
        checkpoint's optimizer holds (and the rate found, from its history)."""
        if self.start_epoch > 0:
            self._row_extras["lr_found"] = self.history[-1].get("lr_found")
            return
        set_activity("running the LR range test")
        started = time.perf_counter()
        found = self._lr_range_test(net, inputs, labels, transform)
        reference = max(g["base_lr"] for g in self.optimizer.param_groups)
        scale = rank0_decides(found.suggestion / reference)  # one choice for every rank
        for group in self.optimizer.param_groups:
            group["base_lr"] *= scale
            group["lr"] = group["base_lr"]
        self.lr_finding = found
        self._row_extras["lr_found"] = found.suggestion
        logger.info("LR range test (%d steps, %.0f s): loss lowest at %.3g, steepest at %.3g; "
                    "training with %.3g for the fastest-learning parameters (all rates x %.3g)",
                    len(found.lrs), time.perf_counter() - started, found.lr_min, found.lr_steep,
                    found.suggestion, scale)

    def _lr_range_test(self, net: nn.Module, inputs: torch.Tensor, labels: torch.Tensor,
                       transform) -> LRFinding:
        """The sweep (lr_find.py) with this trainer's steps; model, optimizer and scaler are
        restored afterwards. The largest base rate sweeps 1e-6..1, the others keep their ratio."""
        saved = (copy.deepcopy(self.model.state_dict()),
                 copy.deepcopy(self.optimizer.state_dict()), self.scaler.state_dict())
        groups = self.optimizer.param_groups
        reference = max(g["base_lr"] for g in groups)
        seed = self.config.seed * 1000 + 999  # not an epoch's seed
        seed_everything(seed)
        net.train()
        set_frozen_batchnorm_eval(self.model)
        batches: list[torch.Tensor] = []

        def step(i: int, lr: float) -> float:
            if not batches:  # a new pass over the data, in a new order; full batches only
                parts = list(self._epoch_order(labels, 10_000 + i).split(self.config.batch_size))
                batches.extend(parts[:-1] if len(parts) > 1 and len(parts[-1]) < len(parts[0])
                               else parts)
            for group in groups:
                group["lr"] = group["base_lr"] * lr / reference
            sums = self._step(net, inputs, labels, transform, batches.pop(0), (-1, i))
            loss, seen = all_reduce_sum([sums["loss"], sums["seen"]], self.device)
            return loss / max(seen, 1)

        try:
            return lr_range_test(step)
        finally:
            self.model.load_state_dict(saved[0])
            self.optimizer.load_state_dict(saved[1])
            self.scaler.load_state_dict(saved[2])

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
