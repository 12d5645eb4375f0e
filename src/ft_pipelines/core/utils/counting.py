"""Counting a model: MACs, parameters, bytes on disk."""

from __future__ import annotations

import torch
import torch_pruning as tp
from safetensors.torch import save as safetensors_save
from torch import nn

from ft_pipelines.core.utils.modes import model_device


def count_macs_params(model: nn.Module, example_inputs: torch.Tensor) -> tuple[int, int]:
    """(MACs, parameters) of one forward pass on ``example_inputs``, by torch-pruning's counter.

    The counter works on a deep copy in eval mode: ``model`` itself is not run or changed.
    """
    example = example_inputs.to(model_device(model))
    macs, params = tp.utils.count_ops_and_params(model, example)
    return int(macs), int(params)


def count_params(model: nn.Module) -> int:
    """Number of parameters (trainable or not; shared parameters counted once)."""
    return int(sum(p.numel() for p in model.parameters()))


def model_size_bytes(model: nn.Module) -> int:
    """Size in bytes of the model's state dict serialised with safetensors (no pickle)."""
    tensors: dict[str, torch.Tensor] = {}
    seen: set[tuple[int, int, tuple[int, ...], torch.dtype]] = set()
    for name, tensor in model.state_dict().items():
        # Tied weights share storage; safetensors refuses duplicates, and they are stored once.
        key = (
            tensor.untyped_storage().data_ptr(),
            tensor.storage_offset(),
            tuple(tensor.shape),
            tensor.dtype,
        )
        if key in seen:
            continue
        seen.add(key)
        tensors[name] = tensor.detach().cpu().contiguous().clone()
    return len(safetensors_save(tensors))

