"""Regularizers for fine-tuning from a pretrained network (L2, L2-SP, DELTA, BSS), their common
protocol, their composition from ``finetune.regularizer``, and DELTA's channel attention."""

# the built-in regularisers register themselves on import
import ft_pipelines.core.regularizers.delta
import ft_pipelines.core.regularizers.l2  # noqa: F401
from ft_pipelines.core.regularizers.attention import (
    ATTENTION_COLUMNS,
    attention_from_frame,
    check_delta_can_train,
    delta_attention,
    delta_layers,
)
from ft_pipelines.core.regularizers.factory import (
    BSSSettings,
    CompositeRegularizer,
    build_regularizer,
)
from ft_pipelines.core.regularizers.l2 import L2SP
from ft_pipelines.core.regularizers.protocol import Regularizer
from ft_pipelines.core.regularizers.registry import (
    REGULARIZERS,
    PlannedRegularizer,
    RegularizerEntry,
    RegularizerSettings,
    register_regularizer,
    regularizer_keys,
)

__all__ = [
    "ATTENTION_COLUMNS",
    "L2SP",
    "REGULARIZERS",
    "BSSSettings",
    "CompositeRegularizer",
    "PlannedRegularizer",
    "Regularizer",
    "RegularizerEntry",
    "RegularizerSettings",
    "attention_from_frame",
    "build_regularizer",
    "check_delta_can_train",
    "delta_attention",
    "delta_layers",
    "register_regularizer",
    "regularizer_keys",
]
