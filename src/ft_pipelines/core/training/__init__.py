"""Training: the Trainer and its callbacks, checkpoints, optimiser and schedule, the
frozen-prefix cache, and fine-tuning as a plan says (``finetune_model``)."""

from ft_pipelines.core.training.cache import frozen_prefix_length
from ft_pipelines.core.training.callbacks import (
    BestModel,
    EarlyStopping,
    ProgressBar,
    default_callbacks,
)
from ft_pipelines.core.training.checkpoint import Checkpointing, load_checkpoint, save_checkpoint
from ft_pipelines.core.training.config import TrainConfig
from ft_pipelines.core.training.finetune import finetune_model, resolve_regularizer, train_config
from ft_pipelines.core.training.optim import build_optimizer, lr_factor
from ft_pipelines.core.training.trainer import Callback, Trainer

__all__ = [
    "BestModel",
    "Callback",
    "Checkpointing",
    "EarlyStopping",
    "ProgressBar",
    "TrainConfig",
    "Trainer",
    "build_optimizer",
    "default_callbacks",
    "finetune_model",
    "frozen_prefix_length",
    "load_checkpoint",
    "lr_factor",
    "resolve_regularizer",
    "save_checkpoint",
    "train_config",
]
