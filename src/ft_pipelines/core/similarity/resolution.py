"""A fixed analysis resolution: the similarity verdict must not flip with the training size.

The BN running statistics were collected at the pretraining resolution; the same images fed at
64 px or 224 px give different activation statistics (at 64 px LFW faces measure 1.2, at 96 px
0.66). Resizing to one analysis size before the network removes that dependence
(docs/strategy.md, "Similarity")."""

from __future__ import annotations

import torch
from torch import nn


def resize_images(images: torch.Tensor, size: int) -> torch.Tensor:
    """uint8 [N, 3, H, W] -> uint8 [N, 3, size, size] (bilinear, antialiased; same size: as is)."""
    if images.shape[-2:] == (size, size):
        return images
    resized = nn.functional.interpolate(images.float(), size=(size, size), mode="bilinear",
                                        antialias=True, align_corners=False)
    return resized.round().clamp(0, 255).to(torch.uint8)


def analysis_images(images: torch.Tensor, analysis_size: int | None) -> torch.Tensor:
    """The images at the analysis size (``None``: as given, i.e. the training resolution)."""
    return images if analysis_size is None else resize_images(images, int(analysis_size))
