"""Training: the Trainer and its callbacks, checkpoints, optimiser and schedule, the
frozen-prefix cache, fine-tuning as a plan says (``finetune_model``), and data parallelism
for every Trainer user (``run_data_parallel``)."""

from ft_pipelines.core.training.cache import frozen_prefix_length
from ft_pipelines.core.training.callbacks import default_callbacks
from ft_pipelines.core.training.checkpoint import UnusableCheckpoint, take_finished_checkpoints
from ft_pipelines.core.training.data_parallel import run_data_parallel
from ft_pipelines.core.training.distributed import (
    DistributedRunError,
    all_reduce_sum,
    all_reduce_tensors,
    rank0_decides,
    rank_slice,
    set_activity,
    world,
)
from ft_pipelines.core.training.finetune import finetune_model, resolve_regularizer
from ft_pipelines.core.training.settings import TrainConfig
from ft_pipelines.core.training.trainer import Callback, Trainer

__all__ = [
    "Callback",
    "DistributedRunError",
    "TrainConfig",
    "Trainer",
    "UnusableCheckpoint",
    "all_reduce_sum",
    "all_reduce_tensors",
    "default_callbacks",
    "finetune_model",
    "frozen_prefix_length",
    "rank0_decides",
    "rank_slice",
    "resolve_regularizer",
    "run_data_parallel",
    "set_activity",
    "take_finished_checkpoints",
    "world",
]
