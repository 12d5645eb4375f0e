"""Generic helpers, one per concept: mode/device save-restore, atomic file writes, the classifier
lookup, counting (MACs, parameters, bytes), run fingerprints, input normalisation, the rank of a
launched process, the device and precision loops run in."""

from ft_pipelines.core.utils.atomic import atomic_write
from ft_pipelines.core.utils.classifier import classifier_name, head_parameter_names, last_linear
from ft_pipelines.core.utils.counting import count_macs_params, count_params, model_size_bytes
from ft_pipelines.core.utils.fingerprint import content_fingerprint, run_fingerprint
from ft_pipelines.core.utils.launch import (
    launched_rank,
    launched_world_size,
    leave_objects_to_exit,
)
from ft_pipelines.core.utils.modes import on_device, preserved_modes
from ft_pipelines.core.utils.normalise import normalise
from ft_pipelines.core.utils.runtime import Runtime, resolve_device, resolve_runtime

__all__ = [
    "Runtime",
    "atomic_write",
    "classifier_name",
    "content_fingerprint",
    "count_macs_params",
    "count_params",
    "head_parameter_names",
    "last_linear",
    "launched_rank",
    "launched_world_size",
    "leave_objects_to_exit",
    "model_size_bytes",
    "normalise",
    "on_device",
    "preserved_modes",
    "resolve_device",
    "resolve_runtime",
    "run_fingerprint",
]
