"""Regularizers for fine-tuning from a pretrained network (L2, L2-SP, DELTA, BSS), their common
protocol, their composition from ``finetune.regularizer``, and DELTA's channel attention."""

from ft_pipelines.core.regularizers.attention import (
    ATTENTION_COLUMNS,
    attention_from_frame,
    check_delta_can_train,
    delta_attention,
    delta_channel_attention,
    delta_layers,
    stage_features,
    train_linear_probe,
)
from ft_pipelines.core.regularizers.bss import BSS
from ft_pipelines.core.regularizers.common import kernel_parameter_names
from ft_pipelines.core.regularizers.delta import DELTA
from ft_pipelines.core.regularizers.factory import (
    BSSSettings,
    CompositeRegularizer,
    build_regularizer,
)
from ft_pipelines.core.regularizers.l2 import L2SP, L2Penalty
from ft_pipelines.core.regularizers.protocol import PARAMS_PATH, Regularizer
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
    "BSS",
    "DELTA",
    "L2SP",
    "PARAMS_PATH",
    "REGULARIZERS",
    "BSSSettings",
    "CompositeRegularizer",
    "PlannedRegularizer",
    "RegularizerEntry",
    "RegularizerSettings",
    "L2Penalty",
    "Regularizer",
    "attention_from_frame",
    "build_regularizer",
    "check_delta_can_train",
    "delta_attention",
    "delta_channel_attention",
    "delta_layers",
    "kernel_parameter_names",
    "register_regularizer",
    "regularizer_keys",
    "stage_features",
    "train_linear_probe",
]
