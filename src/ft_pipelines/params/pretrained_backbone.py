"""``backbone``: the pretrained network every later stage starts from."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from ft_pipelines.core.models import BACKBONE_SOURCES
from ft_pipelines.core.utils.schema import Count, Schema, check_registered, invalid


def _registered(cls: type, value: str) -> str:
    return check_registered(value, BACKBONE_SOURCES)


class BackboneCandidate(Schema):
    """Another network to rank against ``backbone`` (unset keys: backbone.source's defaults)."""

    source: str = "bundled"                 # a registered source (core/models/sources.py)
    architecture: str = "efficientnet_lite0"
    weights: str | None = None
    path: str | None = None
    library: Literal["auto", "timm", "torchvision"] = "auto"

    _registered_source = field_validator("source")(_registered)


class BackboneParams(Schema):
    source: str = "bundled"                 # bundled | torchvision | timm | file | none | artifact
    architecture: str = "efficientnet_lite0"
    weights: str | None = None              # torchvision weights name or timm tag
    path: str | None = None                 # for source=file: a state dict or a model artifact
    library: Literal["auto", "timm", "torchvision"] = "auto"
    input_size: Count = 96                  # training / analysis resolution (px)
    # more networks to rank by LogME of their frozen features (empty: just this one, no ranking)
    candidates: list[BackboneCandidate] = Field(default_factory=list)
    ranking_max_images: Count | None = 600  # training images scored per candidate; null: all

    _registered_source = field_validator("source")(_registered)

    @model_validator(mode="after")
    def _check_path(self) -> BackboneParams:
        if BACKBONE_SOURCES[self.source].needs_path and not self.path:
            raise invalid("path", f"required when backbone.source is {self.source} (file: a "
                                  ".safetensors/.pth state dict; artifact: a model saved by "
                                  "this project, a file or a folder)")
        return self
