"""The one normalisation from uint8 images to network inputs."""

from __future__ import annotations

from collections.abc import Sequence

import torch


def normalise(
    batch_uint8: torch.Tensor, mean: Sequence[float], std: Sequence[float]
) -> torch.Tensor:
    """``(x / 255 - mean) / std`` per channel, in float32, on the batch's device."""
    mean_t = torch.tensor(mean, device=batch_uint8.device).view(1, -1, 1, 1)
    std_t = torch.tensor(std, device=batch_uint8.device).view(1, -1, 1, 1)
    return (batch_uint8.float() / 255.0 - mean_t) / std_t
