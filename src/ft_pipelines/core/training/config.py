"""How to train: one dataclass whose fields are the ``finetune.*`` parameters."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ft_pipelines.core.utils import Runtime, resolve_runtime


@dataclass
class TrainConfig:
    """How to train: ``finetune.*`` parameters (device and precision: ``runtime.*``)."""

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
    device: str = "auto"                # runtime.device
    precision: str = "auto"             # runtime.precision
    label_smoothing: float = 0.0
    use_cache: bool = True
    progress: bool = True
    # The training recipe (docs/strategy.md, "Training recipe"); every ingredient off by default.
    layer_decay: float | None = None    # lr factor per block deeper from the head
    ema: dict[str, Any] | None = None   # {"decay": 0.999, "warmup": False}
    accumulate: int = 1                 # micro-batches per optimizer step (batch_size: effective)
    class_balance: str = "none"         # none | weights | sampler | auto
    lr_find: bool = False               # LR range test before training

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
        self._check_recipe()

    def _check_recipe(self) -> None:
        if self.layer_decay is not None and not 0 < self.layer_decay < 1:
            raise ValueError(f"layer_decay={self.layer_decay}: must be in (0, 1) or null "
                             "(finetune.layer_decay)")
        if self.ema is not None and not 0 < float(self.ema.get("decay", 0.999)) < 1:
            raise ValueError(f"ema.decay={self.ema.get('decay')}: must be in (0, 1) "
                             "(finetune.ema.decay)")
        if not 1 <= self.accumulate <= self.batch_size:
            raise ValueError(f"accumulate={self.accumulate}: must be between 1 and batch_size="
                             f"{self.batch_size} (finetune.accumulate)")
        if self.class_balance not in ("none", "weights", "sampler", "auto"):
            raise ValueError(f"class_balance={self.class_balance!r}: use none, weights, sampler "
                             "or auto (finetune.class_balance)")

    def resolved_runtime(self) -> Runtime:
        return resolve_runtime({"device": self.device, "precision": self.precision})
