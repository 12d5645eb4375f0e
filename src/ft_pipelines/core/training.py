"""The training loop: small core, optional behaviour as callbacks (progress, checkpoints, early
stopping, best-model selection), and caches at the freeze boundary for speed.

Inputs are uint8 image tensors decoded once (core.images); normalisation and augmentation happen
per batch. Every epoch reseeds the RNGs from (seed, epoch), so an epoch's shuffling, augmentation
and dropout do not depend on what ran before it: a resumed run equals an uninterrupted one.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from ft_pipelines.core.backbones import feature_units, forward_head
from ft_pipelines.core.checkpoint import (
    flatten_optimizer,
    load_checkpoint,
    restore_optimizer,
    save_checkpoint,
)

logger = logging.getLogger(__name__)


@dataclass
class TrainConfig:
    """How to train; every field maps to a ``finetune.*`` parameter."""

    epochs: int = 5
    batch_size: int = 64
    optimizer: str = "sgd"
    lr_pretrained: float = 0.01
    lr_new: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 0.0
    schedule: str = "cosine"
    warmup_epochs: float = 0.0
    step_size: int = 10
    gamma: float = 0.1
    patience: int | None = None
    augment: dict[str, Any] = field(default_factory=dict)
    seed: int = 0
    device: str = "auto"
    label_smoothing: float = 0.0
    use_cache: bool = True
    progress: bool = True

    def __post_init__(self) -> None:
        for name in ("lr_pretrained", "lr_new"):
            if not getattr(self, name) > 0:
                raise ValueError(
                    f"{name}={getattr(self, name)}: learning rates must be > 0 "
                    "(finetune.lr_* / the plan's learning_rates)"
                )
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError("epochs and batch_size must be >= 1")
        if self.optimizer not in ("sgd", "adamw"):
            raise ValueError(f"optimizer={self.optimizer!r}: use 'sgd' or 'adamw'")
        if self.schedule not in ("cosine", "step", "constant"):
            raise ValueError(f"schedule={self.schedule!r}: use 'cosine', 'step' or 'constant'")

    def resolved_device(self) -> torch.device:
        if self.device == "auto":
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        return torch.device(self.device)


@dataclass
class ImageData:
    """Decoded images (uint8 [N,3,H,W]) and labels, plus the model's normalisation."""

    images: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return int(self.labels.shape[0])


def seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)


def normalise(
    batch_uint8: torch.Tensor, mean: Sequence[float], std: Sequence[float]
) -> torch.Tensor:
    mean_t = torch.tensor(mean, device=batch_uint8.device).view(1, -1, 1, 1)
    std_t = torch.tensor(std, device=batch_uint8.device).view(1, -1, 1, 1)
    return (batch_uint8.float() / 255.0 - mean_t) / std_t


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


# --------------------------------------------------------------------------- caching


def frozen_prefix_length(model: nn.Module) -> int:
    """How many leading feature units have no trainable parameter (0 when no sequential view)."""
    try:
        units = feature_units(model)
    except ValueError:
        return 0
    count = 0
    for _, unit in units:
        if any(p.requires_grad for p in unit.parameters()):
            break
        count += 1
    return count


class SplitModel(nn.Module):
    """The trainable suffix of a model, fed with cached activations of its frozen prefix."""

    def __init__(self, model: nn.Module, boundary: int) -> None:
        super().__init__()
        self.model = model
        self.suffix = nn.ModuleList(unit for _, unit in feature_units(model)[boundary:])

    def forward(self, activation: torch.Tensor) -> torch.Tensor:
        for unit in self.suffix:
            activation = unit(activation)
        return forward_head(self.model, activation)


@torch.inference_mode()
def prefix_activations(
    model: nn.Module, data: ImageData, boundary: int, batch_size: int, device: torch.device
) -> torch.Tensor:
    """Run the frozen prefix once over all images (eval mode: BN running stats, no dropout)."""
    cfg = model.backbone_cfg
    prefix = nn.Sequential(*[unit for _, unit in feature_units(model)[:boundary]]).eval()
    outputs = []
    for start in range(0, len(data), batch_size):
        batch = normalise(data.images[start : start + batch_size].to(device), cfg.mean, cfg.std)
        outputs.append(prefix(batch).cpu())
    return torch.cat(outputs)


# --------------------------------------------------------------------------- optimiser


def build_optimizer(
    model: nn.Module, config: TrainConfig, new_param_names: set[str], decay_exempt: set[str]
) -> torch.optim.Optimizer:
    """Two learning rates (pretrained, new); no weight decay on anchored (L2-SP) weights."""
    groups: dict[tuple[str, bool], list[nn.Parameter]] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        kind = "new" if name in new_param_names else "pretrained"
        groups.setdefault((kind, name not in decay_exempt), []).append(p)
    if not groups:
        raise ValueError("No trainable parameter: check the plan's trainable_blocks")
    param_groups = [
        {
            "params": params,
            "base_lr": config.lr_new if kind == "new" else config.lr_pretrained,
            "weight_decay": config.weight_decay if decays else 0.0,
            "kind": kind,
        }
        for (kind, decays), params in sorted(groups.items())
    ]
    for group in param_groups:
        group["lr"] = group["base_lr"]
    if config.optimizer == "sgd":
        return torch.optim.SGD(param_groups, lr=config.lr_pretrained, momentum=config.momentum)
    return torch.optim.AdamW(param_groups, lr=config.lr_pretrained)


def lr_factor(config: TrainConfig, step: int, steps_per_epoch: int) -> float:
    """Learning-rate multiplier at a global step: linear warm-up, then cosine/step/constant."""
    total = config.epochs * steps_per_epoch
    warmup = int(config.warmup_epochs * steps_per_epoch)
    if step < warmup:
        return (step + 1) / warmup
    if config.schedule == "cosine":
        progress = (step - warmup) / max(1, total - warmup)
        return 0.5 * (1.0 + math.cos(math.pi * progress))
    if config.schedule == "step":
        return config.gamma ** ((step // steps_per_epoch) // config.step_size)
    return 1.0


def set_frozen_batchnorm_eval(model: nn.Module) -> None:
    """BN layers whose parameters are frozen keep their pretrained running statistics."""
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            params = list(module.parameters(recurse=False))
            if params and not any(p.requires_grad for p in params):
                module.eval()


# --------------------------------------------------------------------------- callbacks


class Callback:
    """Optional behaviour plugged into ``Trainer`` (Lightning style); every hook is a no-op."""

    def on_train_start(self, trainer: Trainer) -> None: ...
    def on_epoch_start(self, trainer: Trainer, epoch: int) -> None: ...
    def on_batch_end(self, trainer: Trainer, epoch: int, batch: int, stats: dict) -> None: ...
    def on_epoch_end(self, trainer: Trainer, epoch: int, row: dict) -> None: ...
    def on_train_end(self, trainer: Trainer) -> None: ...


class ProgressBar(Callback):
    """A tqdm bar per epoch: loss, accuracy, regulariser term, images/s."""

    def on_epoch_start(self, trainer: Trainer, epoch: int) -> None:
        from tqdm.auto import tqdm

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
        if self.best_key is None or key > self.best_key:
            self.best_key, self.best_epoch = key, epoch
            self.state = {k: v.detach().clone() for k, v in trainer.model.state_dict().items()}

    def checkpoint_state(self) -> tuple[dict, dict]:
        return dict(self.state or {}), {"best_key": self.best_key, "best_epoch": self.best_epoch}

    def restore_checkpoint_state(self, tensors: dict, meta: dict) -> None:
        self.state = tensors or None
        self.best_key = tuple(meta["best_key"]) if meta["best_key"] else None
        self.best_epoch = meta["best_epoch"]

    def on_train_end(self, trainer: Trainer) -> None:
        if self.state is not None:
            trainer.model.load_state_dict(self.state)
            logger.info("Selected epoch %d on the validation split", self.best_epoch + 1)


class EarlyStopping(Callback):
    """Stop when validation accuracy has not improved for ``patience`` epochs."""

    def __init__(self, patience: int) -> None:
        self.patience, self.best, self.wait = patience, -1.0, 0

    def checkpoint_state(self) -> tuple[dict, dict]:
        return {}, {"best": self.best, "wait": self.wait}

    def restore_checkpoint_state(self, tensors: dict, meta: dict) -> None:
        self.best, self.wait = meta["best"], meta["wait"]

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


class Checkpointing(Callback):
    """Save everything needed to continue after each epoch; ``restore`` picks it up again.

    Must come after the callbacks whose state it saves (best model, early stopping).
    """

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)

    def on_epoch_end(self, trainer: Trainer, epoch: int, row: dict) -> None:
        tensors = {f"model.{k}": v for k, v in trainer.model.state_dict().items()}
        optim_tensors, optim_meta = flatten_optimizer(trainer.optimizer)
        tensors.update(optim_tensors)
        meta = {
            "epoch": epoch + 1,
            "history": trainer.history,
            "optimizer": optim_meta,
            "callbacks": {},
        }
        for i, callback in enumerate(trainer.callbacks):
            if hasattr(callback, "checkpoint_state"):
                cb_tensors, cb_meta = callback.checkpoint_state()
                tensors.update({f"cb{i}.{k}": v for k, v in cb_tensors.items()})
                meta["callbacks"][str(i)] = cb_meta
        save_checkpoint(self.directory, tensors, meta)

    def restore(self, trainer: Trainer) -> int:
        """Load the last checkpoint into the trainer; returns the epoch to start from."""
        loaded = load_checkpoint(self.directory)
        if loaded is None:
            return 0
        tensors, meta = loaded
        trainer.model.load_state_dict(
            {k[6:]: v for k, v in tensors.items() if k.startswith("model.")}
        )
        restore_optimizer(trainer.optimizer, tensors, meta["optimizer"])
        trainer.history = meta["history"]
        for i, callback in enumerate(trainer.callbacks):
            if str(i) in meta["callbacks"]:
                prefix = f"cb{i}."
                callback.restore_checkpoint_state(
                    {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)},
                    meta["callbacks"][str(i)],
                )
        logger.info("Resuming from %s after epoch %d", self.directory, meta["epoch"])
        return int(meta["epoch"])


# --------------------------------------------------------------------------- the loop


class Trainer:
    """Cross-entropy + an optional regulariser, two learning rates, callbacks around the loop."""

    def __init__(
        self,
        model: nn.Module,
        config: TrainConfig,
        regularizer: Any = None,
        callbacks: Sequence[Callback] = (),
        new_param_names: set[str] | None = None,
        checkpoint_dir: str | Path | None = None,
    ) -> None:
        self.model, self.config, self.regularizer = model, config, regularizer
        self.callbacks = list(callbacks)
        if checkpoint_dir is not None:
            self.callbacks.append(Checkpointing(checkpoint_dir))
        self.new_param_names = set(new_param_names or ())
        self.device = config.resolved_device()
        self.history: list[dict] = []
        self.stop = False
        self.steps_per_epoch = 0
        self.optimizer: torch.optim.Optimizer | None = None

    def _call(self, hook: str, *args: Any) -> None:
        for callback in self.callbacks:
            getattr(callback, hook)(self, *args)

    def _prepare_inputs(self, train: ImageData, val: ImageData):
        """(network, train inputs, val inputs, per-batch transform) with or without the cache."""
        cfg = self.model.backbone_cfg
        augment = build_augmentation(self.config.augment, cfg.input_size)
        boundary = frozen_prefix_length(self.model) if self.config.use_cache else 0
        if augment is None and self.config.use_cache and hasattr(
            self.regularizer, "precompute_reference"
        ):  # fixed inputs: the frozen reference's feature maps never change, compute them once
            self.regularizer.precompute_reference(
                normalise(train.images, cfg.mean, cfg.std).to(self.device)
            )
        if (
            augment is None
            and boundary > 0
            and not getattr(self.regularizer, "needs_inputs", False)
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
        """Train, select the best epoch on ``val``; returns one history row per epoch."""
        self.model.to(self.device)
        net, train_x, val_x, transform = self._prepare_inputs(train, val)
        if self.regularizer is not None:
            self.regularizer.attach(self.model)
        exempt = self.regularizer.decay_exempt() if self.regularizer is not None else set()
        self.optimizer = build_optimizer(self.model, self.config, self.new_param_names, exempt)
        self.steps_per_epoch = math.ceil(len(train) / self.config.batch_size)
        start = 0
        for callback in self.callbacks:
            if isinstance(callback, Checkpointing):
                start = callback.restore(self)
        self._call("on_train_start")
        try:
            for epoch in range(start, self.config.epochs):
                if self.stop:
                    break
                self._call("on_epoch_start", epoch)
                row = self._train_epoch(net, train_x, train.labels, transform, epoch)
                row.update(self._evaluate(net, val_x, val.labels, transform))
                self.history.append(row)
                self._call("on_epoch_end", epoch, row)
        finally:
            if self.regularizer is not None:
                self.regularizer.detach()
        self._call("on_train_end")
        return pd.DataFrame(self.history)

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
            idx = order[start : start + config.batch_size]
            x = inputs[idx].to(self.device)
            y = labels[idx].to(self.device)
            if transform is not None:
                x = transform(x, True)
            if hasattr(self.regularizer, "select"):
                self.regularizer.select(idx)
            factor = lr_factor(
                config, epoch * self.steps_per_epoch + batch_index, self.steps_per_epoch
            )
            for group in self.optimizer.param_groups:
                group["lr"] = group["base_lr"] * factor
            logits = net(x)
            loss = nn.functional.cross_entropy(logits, y, label_smoothing=config.label_smoothing)
            reg = (
                self.regularizer.penalty(self.model, x)
                if self.regularizer is not None
                else torch.zeros((), device=self.device)
            )
            total = loss + reg
            if not torch.isfinite(total):
                raise FloatingPointError(
                    f"Loss became {total.item()} at epoch {epoch + 1}, batch {batch_index + 1} "
                    f"(cross-entropy {loss.item()}, regulariser {reg.item()}). The last good "
                    "checkpoint is kept; lower the learning rate or the regulariser weight."
                )
            self.optimizer.zero_grad(set_to_none=True)
            total.backward()
            self.optimizer.step()
            n = len(idx)
            sums["loss"] += loss.item() * n
            sums["reg"] += reg.item() * n
            sums["correct"] += int((logits.argmax(1) == y).sum())
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
        net.eval()
        loss_sum, correct = 0.0, 0
        for start in range(0, len(labels), 256):
            x = inputs[start : start + 256].to(self.device)
            y = labels[start : start + 256].to(self.device)
            if transform is not None:
                x = transform(x, False)
            logits = net(x)
            loss_sum += nn.functional.cross_entropy(logits, y, reduction="sum").item()
            correct += int((logits.argmax(1) == y).sum())
        n = max(1, len(labels))
        return {"val_loss": loss_sum / n, "val_acc": correct / n}


def default_callbacks(config: TrainConfig) -> list[Callback]:
    """Progress bar, best-epoch selection and (when configured) early stopping."""
    callbacks: list[Callback] = [BestModel()]
    if config.patience:
        callbacks.append(EarlyStopping(config.patience))
    if config.progress:
        callbacks.insert(0, ProgressBar())
    return callbacks
