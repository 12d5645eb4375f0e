"""Channel importance and structural pruning: TransTailor's gates and Taylor scores, L1/random
baselines, the importance table, pruning with torch-pruning, and prune-then-fine-tune."""

from ft_pipelines.core.pruning.baselines import feeding_convs, l1_scores, random_scores
from ft_pipelines.core.pruning.frontier import (
    SearchSettings,
    StepOutcome,
    frontier_figure,
    frontier_search,
)
from ft_pipelines.core.pruning.gates import ChannelGates, frozen_eval, taylor_scores, train_gates
from ft_pipelines.core.pruning.graph import build_dependency_graph, prunable_bn_layers
from ft_pipelines.core.pruning.importance import (
    IMPORTANCE_METHODS,
    ImportanceMethod,
    ImportanceParams,
    register_importance,
    score_channels,
)
from ft_pipelines.core.pruning.importance_table import channel_groups, importance_table
from ft_pipelines.core.pruning.settings import DistillParams, PruningParams
from ft_pipelines.core.pruning.structural import (
    PruningLimitReached,
    TableImportance,
    channel_floors,
    prune_by_importance,
)
from ft_pipelines.core.pruning.transtailor import (
    back_off,
    importance_strength,
    prune_and_finetune,
    validation_top1,
)

__all__ = [
    "IMPORTANCE_METHODS",
    "DistillParams",
    "ImportanceMethod",
    "ImportanceParams",
    "PruningParams",
    "register_importance",
    "ChannelGates",
    "PruningLimitReached",
    "SearchSettings",
    "StepOutcome",
    "TableImportance",
    "back_off",
    "build_dependency_graph",
    "channel_floors",
    "channel_groups",
    "feeding_convs",
    "frontier_figure",
    "frontier_search",
    "frozen_eval",
    "importance_strength",
    "importance_table",
    "l1_scores",
    "prunable_bn_layers",
    "prune_by_importance",
    "prune_and_finetune",
    "random_scores",
    "score_channels",
    "taylor_scores",
    "train_gates",
    "validation_top1",
]
