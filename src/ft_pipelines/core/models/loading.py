"""Loading the network a run starts from: a weight source (``create_backbone``) or a whole model
artifact saved by this project (``backbone.source=artifact``)."""

from __future__ import annotations

from pathlib import Path

from torch import nn

from ft_pipelines.core.models.artifact import load_model_file, newest_artifact
from ft_pipelines.core.models.sources import BUNDLED_ARCHITECTURE, WEIGHT_SOURCES, create_backbone

SOURCES = (*WEIGHT_SOURCES, "artifact")


def load_backbone(
    source: str = "bundled",
    architecture: str = BUNDLED_ARCHITECTURE,
    weights: str | None = None,
    path: str | None = None,
    input_size: int = 96,
    library: str = "auto",
) -> nn.Module:
    """The pretrained network: ``create_backbone`` for a weight source, or for ``artifact`` the
    model saved at ``path`` (a file, or the newest artifact in a folder) with its surgery and
    pruning, exactly as it was saved (``architecture``/``input_size`` then come from the file)."""
    if source != "artifact":
        return create_backbone(source, architecture, weights, path, input_size, library)
    if not path:
        raise ValueError("backbone.source=artifact needs backbone.path (a model artifact file or "
                         "folder saved by this project, e.g. data/06_models/finetuned_model"
                         ".safetensors)")
    return load_model_file(newest_artifact(path) if Path(path).is_dir() else path)
