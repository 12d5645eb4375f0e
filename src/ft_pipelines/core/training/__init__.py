"""Training: the Trainer and its callbacks, checkpoints, optimiser and schedule, the
frozen-prefix cache, fine-tuning as a plan says (``finetune_model``), and data parallelism
for every Trainer user (``run_data_parallel``)."""

from ft_pipelines.core.training.augment import (
    build_augmentation,
    cutmix_batch,
    mixup_batch,
    summed_loss,
)
from ft_pipelines.core.training.balance import (
    IMBALANCE_RATIO,
    balanced_order,
    class_weights,
    resolve_class_balance,
)
from ft_pipelines.core.training.cache import frozen_prefix_length
from ft_pipelines.core.training.callbacks import (
    BestModel,
    EarlyStopping,
    ProgressBar,
    default_callbacks,
)
from ft_pipelines.core.training.checkpoint import (
    Checkpointing,
    UnusableCheckpoint,
    load_checkpoint,
    save_checkpoint,
    take_finished_checkpoints,
)
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
from ft_pipelines.core.training.ema import ModelEma
from ft_pipelines.core.training.finetune import finetune_model, resolve_regularizer, train_config
from ft_pipelines.core.training.lr_find import LRFinding, lr_find_figure, lr_range_test
from ft_pipelines.core.training.optim import block_depths, build_optimizer, lr_factor
from ft_pipelines.core.training.settings import TrainConfig
from ft_pipelines.core.training.trainer import Callback, Trainer

__all__ = [
    "IMBALANCE_RATIO",
    "BestModel",
    "LRFinding",
    "ModelEma",
    "balanced_order",
    "block_depths",
    "build_augmentation",
    "class_weights",
    "cutmix_batch",
    "lr_find_figure",
    "lr_range_test",
    "mixup_batch",
    "resolve_class_balance",
    "summed_loss",
    "Callback",
    "Checkpointing",
    "DistributedRunError",
    "EarlyStopping",
    "ProgressBar",
    "TrainConfig",
    "Trainer",
    "UnusableCheckpoint",
    "all_reduce_sum",
    "all_reduce_tensors",
    "build_optimizer",
    "default_callbacks",
    "finetune_model",
    "frozen_prefix_length",
    "load_checkpoint",
    "lr_factor",
    "rank0_decides",
    "rank_slice",
    "resolve_regularizer",
    "run_data_parallel",
    "save_checkpoint",
    "set_activity",
    "take_finished_checkpoints",
    "train_config",
    "world",
]
