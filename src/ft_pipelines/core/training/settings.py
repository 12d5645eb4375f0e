"""How the Trainer trains (``TrainingRecipe``: the ``finetune.*`` keys it reads, with the only
defaults) and the config of one training (``TrainConfig``: a recipe plus what the plan or the
caller decides: epochs, learning rates, device). ``finetune``'s schema extends the recipe with
the stage's own keys (``FinetuneParams``)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from ft_pipelines.core.regularizers import BSSSettings, RegularizerSettings
from ft_pipelines.core.utils.runtime import Runtime, RuntimeParams, resolve_runtime
from ft_pipelines.core.utils.schema import (
    Count,
    Device,
    Fraction,
    LearningRate,
    Schema,
    Seed,
    Weight,
    invalid,
    override,
)

_RUNTIME = RuntimeParams()


class RandomResizedCrop(Schema):
    scale: tuple[Fraction, Fraction] = (0.7, 1.0)  # area range of the crop

    @model_validator(mode="after")
    def _check_scale(self) -> RandomResizedCrop:
        low, high = self.scale
        if not 0 < low <= high:
            raise invalid("scale", f"must be [low, high] with 0 < low <= high <= 1, got "
                                   f"{list(self.scale)}")
        return self


class Augment(Schema):
    random_resized_crop: RandomResizedCrop | None = None
    horizontal_flip: bool = False
    # torchvision.transforms.v2 policy on uint8 images (any policy turns the frozen-prefix cache
    # off, as every augmentation does: the inputs change every epoch)
    policy: Literal["none", "trivial", "randaugment", "autoaugment"] = "none"
    random_erasing: Fraction = 0.0          # probability per image (after normalisation)
    mixup: float = Field(default=0.0, ge=0)  # Beta(alpha, alpha); 0: off
    cutmix: float = Field(default=0.0, ge=0)  # Beta(alpha, alpha); 0: off (both: 50/50 per batch)

    @property
    def on(self) -> bool:
        """Whether any augmentation is on (policy none, probabilities and alphas 0 are off)."""
        return (self.random_resized_crop is not None or self.horizontal_flip
                or self.policy != "none" or self.random_erasing > 0 or self.mixup > 0
                or self.cutmix > 0)


class EMASettings(Schema):
    """Exponential moving average of weights and buffers (timm's ModelEmaV2)."""

    decay: float = Field(default=0.999, gt=0, lt=1)
    warmup: bool = False  # decay_t = min(decay, (1 + t) / (10 + t)): useful for few steps


class TrainingRecipe(Schema):
    """The ``finetune.*`` keys the Trainer reads."""

    batch_size: Count = 64
    optimizer: Literal["sgd", "adamw"] = "sgd"
    momentum: float = Field(default=0.9, ge=0, lt=1)
    weight_decay: Weight = 0.0
    schedule: Literal["cosine", "step", "constant"] = "cosine"
    warmup_epochs: float = Field(default=0.5, ge=0)
    step_size: Count = 10                   # schedule=step: epochs between decays
    gamma: float = Field(default=0.1, gt=0, le=1)  # schedule=step: factor per decay
    patience: Count | None = None           # early stopping on validation accuracy
    label_smoothing: float = Field(default=0.0, ge=0, lt=1)
    augment: Augment = Field(default_factory=Augment)
    use_cache: bool = True
    seed: Seed = 0
    progress: bool = True                   # progress bars per epoch
    # The training recipe (docs/strategy.md, "Training recipe"); every ingredient off by default.
    layer_decay: float | None = Field(default=None, gt=0, lt=1)  # lr x this per block deeper
    ema: EMASettings | None = None
    accumulate: Count = 1                   # batch_size = effective batch, in this many parts
    class_balance: Literal["none", "weights", "sampler", "auto"] = "none"
    lr_find: bool = False                   # LR range test before training (sets the rates)

    @model_validator(mode="after")
    def _check_accumulate(self) -> TrainingRecipe:
        if self.accumulate > self.batch_size:
            raise invalid("accumulate", f"must be <= batch_size ({self.batch_size}): batch_size "
                                        "is the effective batch, split into accumulate parts")
        return self


class TrainConfig(TrainingRecipe):
    """One training: a recipe, the epochs and learning rates (the plan's for the fine-tuning
    stage, see ``train_config``; the pruning stage's for its recovery), and where it runs
    (``runtime.device`` / ``runtime.precision``)."""

    epochs: Count = 5
    lr_pretrained: LearningRate = 0.01
    lr_new: LearningRate = 0.1
    device: Device = _RUNTIME.device
    precision: Literal["auto", "fp32", "bf16", "fp16"] = _RUNTIME.precision

    def resolved_runtime(self) -> Runtime:
        return resolve_runtime({"device": self.device, "precision": self.precision})


class FinetuneParams(TrainingRecipe):
    """``finetune``: the Trainer's recipe plus the stage's own keys."""

    regularizer: RegularizerSettings = Field(default_factory=RegularizerSettings)
    bss: BSSSettings | None = None
    delta_probe_images: Count | None = 256  # images for DELTA's channel attention; null: all
    resume: bool = True
    checkpoint_dir: str = "data/06_models/checkpoints"
    keep_checkpoints: bool = False          # true: keep them after the outputs are saved
    # Overrides of the plan (strategy.training.<strategy>); unset: the plan's.
    epochs: Count | None = override("epochs instead of the plan's")
    lr_pretrained: LearningRate | None = override("learning rate of pretrained weights")
    lr_new: LearningRate | None = override("learning rate of the new head")
