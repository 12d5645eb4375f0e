"""Batch Spectral Shrinkage (docs/references.md, "BSS")."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.hooks import RemovableHandle

from ft_pipelines.core.regularizers.common import check_batch, check_non_negative, submodule
from ft_pipelines.core.regularizers.protocol import PARAMS_PATH, Regularizer


class BSS(Regularizer):
    """Batch Spectral Shrinkage (Chen et al. 2019): ``eta * sum of the k smallest sigma^2`` of
    the batch feature matrix ``[B, D]`` entering the module ``feature_module`` (the classifier).
    """

    name = "bss"
    needs_inputs = False  # the classifier's input is captured by a hook

    def __init__(self, eta: float = 0.001, k: int = 1, *, feature_module: str) -> None:
        check_non_negative(eta=eta)
        if int(k) != k or k < 1:
            raise ValueError(f"BSS k must be a positive integer, got {k}.")
        self.eta, self.k, self.feature_module = float(eta), int(k), feature_module
        self._features: Tensor | None = None
        self._handle: RemovableHandle | None = None

    def attach(self, model: nn.Module) -> None:
        """Hook the input of ``feature_module`` with a forward pre-hook."""
        self.detach()
        module = submodule(model, self.feature_module, f"{PARAMS_PATH}.bss.feature_module")

        def hook(module: nn.Module, args: tuple[Any, ...]) -> None:
            self._features = args[0]

        self._handle = module.register_forward_pre_hook(hook)

    def detach(self) -> None:
        """Remove the hook and drop the captured features."""
        if self._handle is not None:
            self._handle.remove()
        self._handle = None
        self._features = None

    def penalty(self, model: nn.Module, inputs: Tensor) -> Tensor:
        """``eta * sum_{i<=k} sigma_{-i}^2`` of the captured features (computed in float32)."""
        features = check_batch(self._features, inputs, "BSS", "classifier inputs")
        flat = features.reshape(features.shape[0], -1).float()
        if self.k > min(flat.shape):
            raise ValueError(f"BSS k={self.k} exceeds min(batch, feature dim) = "
                             f"{min(flat.shape)}; lower {PARAMS_PATH}.bss.k.")
        singular_values = torch.linalg.svdvals(flat)  # descending
        return self.eta * singular_values[-self.k:].pow(2).sum()

    def decay_exempt(self) -> set[str]:
        """Empty: BSS does not touch weights directly."""
        return set()
