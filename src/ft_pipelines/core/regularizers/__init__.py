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
    REGULARIZER_KEYS,
    REGULARIZER_NAMES,
    CompositeRegularizer,
    build_regularizer,
)
from ft_pipelines.core.regularizers.l2 import L2SP, L2Penalty
from ft_pipelines.core.regularizers.protocol import PARAMS_PATH, Regularizer

__all__ = [
    "ATTENTION_COLUMNS",
    "BSS",
    "DELTA",
    "L2SP",
    "PARAMS_PATH",
    "REGULARIZER_KEYS",
    "REGULARIZER_NAMES",
    "CompositeRegularizer",
    "L2Penalty",
    "Regularizer",
    "attention_from_frame",
    "build_regularizer",
    "check_delta_can_train",
    "delta_attention",
    "delta_channel_attention",
    "delta_layers",
    "kernel_parameter_names",
    "stage_features",
    "train_linear_probe",
]
