"""Channel importance and structural pruning: TransTailor's gates and Taylor scores, L1/random
baselines, the importance table, pruning with torch-pruning, and prune-then-fine-tune."""

from ft_pipelines.core.pruning.baselines import l1_scores
from ft_pipelines.core.pruning.frontier import frontier_figure, input_sizes
from ft_pipelines.core.pruning.graph import prunable_bn_layers
from ft_pipelines.core.pruning.importance import (
    IMPORTANCE_METHODS,
    ImportanceMethod,
    ImportanceParams,
    register_importance,
    score_channels,
)
from ft_pipelines.core.pruning.importance_table import channel_groups, importance_table
from ft_pipelines.core.pruning.settings import DistillParams, PruningParams
from ft_pipelines.core.pruning.structural import PruningLimitReached, prune_by_importance
from ft_pipelines.core.pruning.transtailor import prune_and_finetune

__all__ = [
    "IMPORTANCE_METHODS",
    "DistillParams",
    "ImportanceMethod",
    "ImportanceParams",
    "PruningLimitReached",
    "PruningParams",
    "channel_groups",
    "frontier_figure",
    "input_sizes",
    "importance_table",
    "l1_scores",
    "prunable_bn_layers",
    "prune_and_finetune",
    "prune_by_importance",
    "register_importance",
    "score_channels",
]
