"""``backbone``: the pretrained network every later stage starts from."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from ft_pipelines.core.utils.schema import Count, Schema, invalid


class BackboneCandidate(Schema):
    """Another network to rank against ``backbone`` (unset keys: backbone.source's defaults)."""

    source: Literal["bundled", "torchvision", "timm", "file", "artifact", "none"] = "bundled"
    architecture: str = "efficientnet_lite0"
    weights: str | None = None
    path: str | None = None
    library: Literal["auto", "timm", "torchvision"] = "auto"


class BackboneParams(Schema):
    source: Literal["bundled", "torchvision", "timm", "file", "artifact", "none"] = "bundled"
    architecture: str = "efficientnet_lite0"
    weights: str | None = None              # torchvision weights name or timm tag
    path: str | None = None                 # for source=file: a state dict or a model artifact
    library: Literal["auto", "timm", "torchvision"] = "auto"
    input_size: Count = 96                  # training / analysis resolution (px)
    # more networks to rank by LogME of their frozen features (empty: just this one, no ranking)
    candidates: list[BackboneCandidate] = Field(default_factory=list)
    ranking_max_images: Count | None = 600  # training images scored per candidate; null: all

    @model_validator(mode="after")
    def _check_path(self) -> BackboneParams:
        if self.source in ("file", "artifact") and not self.path:
            raise invalid("path", f"required when backbone.source is {self.source} (file: a "
                                  ".safetensors/.pth state dict; artifact: a model saved by "
                                  "this project, a file or a folder)")
        return self
