"""Networks: the backbone factory and its weight sources, the architecture-layout registry, the
surgery moves, and the model artifact (weights + spec in one safetensors file)."""

from ft_pipelines.core.models.artifact import (
    channel_counts,
    load_model_file,
    newest_artifact,
    read_spec,
    save_model_file,
)
from ft_pipelines.core.models.config import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    BackboneConfig,
    attach_config,
)
from ft_pipelines.core.models.layouts import (
    LAYOUT_FAMILIES,
    BackboneLayout,
    LayoutFamily,
    TruncatedNetwork,
    describe_layout,
    feature_units,
    forward_head,
    pooled_stages,
    register_layout,
)
from ft_pipelines.core.models.provenance import (
    InputMismatchError,
    classes_of,
    data_fingerprint,
    describe_source,
    input_mismatch,
    record_sources,
    record_training_data,
    recorded_sources,
    source_fingerprint,
    stale_sources,
    training_data,
)
from ft_pipelines.core.models.sources import (
    BACKBONE_SOURCES,
    BackboneSource,
    load_backbone,
    register_backbone_source,
)
from ft_pipelines.core.models.state_dict import load_state_dict_file
from ft_pipelines.core.models.surgery import (
    apply_surgery,
    drop_last_blocks,
    freeze_all_but,
    reinitialize,
    replace_head,
    surgery_summary,
)

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "InputMismatchError",
    "LAYOUT_FAMILIES",
    "BACKBONE_SOURCES",
    "BackboneSource",
    "BackboneConfig",
    "BackboneLayout",
    "LayoutFamily",
    "TruncatedNetwork",
    "apply_surgery",
    "attach_config",
    "channel_counts",
    "classes_of",
    "data_fingerprint",
    "describe_layout",
    "describe_source",
    "drop_last_blocks",
    "feature_units",
    "forward_head",
    "input_mismatch",
    "freeze_all_but",
    "load_backbone",
    "register_backbone_source",
    "load_model_file",
    "load_state_dict_file",
    "newest_artifact",
    "pooled_stages",
    "read_spec",
    "record_sources",
    "record_training_data",
    "recorded_sources",
    "register_layout",
    "reinitialize",
    "replace_head",
    "save_model_file",
    "source_fingerprint",
    "stale_sources",
    "surgery_summary",
    "training_data",
]
