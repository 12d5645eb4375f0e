"""``backbone`` (the pretrained network) and ``similarity`` (how far the data is from it)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from ft_pipelines.params.base import Count, Schema, Seed, invalid


class BackboneParams(Schema):
    source: Literal["bundled", "torchvision", "timm", "file", "none"] = "bundled"
    architecture: str = "efficientnet_lite0"
    weights: str | None = None              # torchvision weights name or timm tag
    path: str | None = None                 # for source=file: a state dict or a model artifact
    library: Literal["auto", "timm", "torchvision"] = "auto"
    input_size: Count = 96                  # training / analysis resolution (px)

    @model_validator(mode="after")
    def _check_path(self) -> BackboneParams:
        if self.source == "file" and not self.path:
            raise invalid("path", "required when backbone.source is file (a .safetensors/.pth "
                                  "state dict, or a model artifact folder)")
        return self


class SimilarityParams(Schema):
    max_images: Count | None = 600          # train images used for the signals; null: all
    batch_size: Count = 128
    source_reference: str | None = None     # image folder from the pretraining domain
    emd_gamma: float = Field(default=0.01, gt=0)
    seed: Seed = 0
