"""Temporary train/eval mode and device for a module, restored exactly on exit."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn


@contextlib.contextmanager
def preserved_modes(*modules: nn.Module, training: bool | None = None) -> Iterator[None]:
    """Inside: ``modules`` in train (``training=True``) or eval (``False``) mode, or left as they
    are (``None``). On exit every submodule gets back its own flag.

    Every submodule, not only the top ones: ``train()`` recurses, so restoring only the top
    module would flip children that were in another mode (e.g. frozen BatchNorm kept in eval).
    """
    saved = [(sub, sub.training) for module in modules for sub in module.modules()]
    try:
        if training is not None:
            for module in modules:
                module.train(training)
        yield
    finally:
        for sub, mode in saved:
            sub.training = mode


def model_device(model: nn.Module) -> torch.device:
    """Where the model's first parameter (or buffer) lives; CPU for a module without tensors."""
    first = next(iter(model.parameters()), None)
    if first is None:
        first = next(iter(model.buffers()), None)
    return first.device if first is not None else torch.device("cpu")


@contextlib.contextmanager
def on_device(model: nn.Module, device: str | torch.device, *, channels_last: bool = False
              ) -> Iterator[nn.Module]:
    """``model`` moved to ``device`` inside; moved back to where it was on exit.

    ``channels_last``: its 4-d weights in channels_last inside (oneDNN's depthwise and 1x1
    convolutions run about 2x faster on CPU for these networks; feed it channels_last
    batches), contiguous again on exit, as models are stored and timed."""
    original = model_device(model)
    layout = {"memory_format": torch.channels_last} if channels_last else {}
    # converted outside inference mode even when the caller is in it: parameters re-created
    # there would be inference tensors, and the model could never be trained again
    with torch.inference_mode(False):
        model.to(device, **layout)
    try:
        yield model
    finally:
        with torch.inference_mode(False):
            model.to(original, **({"memory_format": torch.contiguous_format}
                                  if channels_last else {}))
