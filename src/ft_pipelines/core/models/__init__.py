"""Networks: the backbone factory and its weight sources, the architecture-layout registry, the
surgery moves, and the model artifact (weights + spec in one safetensors file)."""

from ft_pipelines.core.models.artifact import (
    load_model_file,
    newest_artifact,
    read_spec,
    save_model_file,
)
from ft_pipelines.core.models.config import BackboneConfig, attach_config, with_input_size
from ft_pipelines.core.models.layouts import (
    LAYOUT_FAMILIES,
    BackboneLayout,
    LayoutFamily,
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
from ft_pipelines.core.models.surgery import (
    apply_surgery,
    freeze_all_but,
    replace_head,
    surgery_summary,
)

__all__ = [
    "BACKBONE_SOURCES",
    "LAYOUT_FAMILIES",
    "BackboneConfig",
    "BackboneLayout",
    "BackboneSource",
    "InputMismatchError",
    "LayoutFamily",
    "apply_surgery",
    "attach_config",
    "with_input_size",
    "classes_of",
    "data_fingerprint",
    "describe_source",
    "feature_units",
    "forward_head",
    "freeze_all_but",
    "input_mismatch",
    "load_backbone",
    "load_model_file",
    "newest_artifact",
    "pooled_stages",
    "read_spec",
    "record_sources",
    "record_training_data",
    "recorded_sources",
    "register_backbone_source",
    "register_layout",
    "replace_head",
    "save_model_file",
    "source_fingerprint",
    "stale_sources",
    "surgery_summary",
    "training_data",
]
