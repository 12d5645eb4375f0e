"""DELTA: feature maps pulled toward a frozen reference's (docs/references.md, "DELTA")."""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.hooks import RemovableHandle

from ft_pipelines.core.regularizers.common import (
    check_batch,
    check_non_negative,
    kernel_parameter_names,
    new_kernel_names,
    submodule,
    sum_of_squares,
    trainable,
)
from ft_pipelines.core.regularizers.protocol import PARAMS_PATH, Regularizer
from ft_pipelines.core.regularizers.registry import RegularizerEntry, register_regularizer
from ft_pipelines.core.utils.schema import Schema, Weight

logger = logging.getLogger(__name__)


def _capture_output(store: dict[str, Tensor], name: str) -> Callable[..., None]:
    def hook(module: nn.Module, args: Any, output: Any) -> None:
        if not isinstance(output, Tensor):
            raise TypeError(f"DELTA: module {name!r} returns {type(output).__name__}, not a "
                            "tensor; hook a module whose output is a feature map.")
        # Clone: a following in-place op (ReLU(inplace=True)) would otherwise change it.
        store[name] = output.clone()

    return hook


class DELTA(Regularizer):
    """DELTA (Li et al. 2019): feature maps of the model pulled toward a frozen reference's.

    ``alpha * mean_b( sum_j sum_c W_jc * mean_hw (FM_jc - FM0_jc)^2 ) + beta/2 * ||w_new||^2``
    with FM taken at the outputs of the modules ``layer_names`` (same names in both networks).
    ``attention[name]`` holds ``W_j`` (``[C]``, see :func:`delta_channel_attention`); None means
    ``1/C``. The reference is deep-copied (the caller's module is left untouched, e.g. when
    models are handed between nodes by reference), frozen and kept in eval mode.
    Reference maps can be supplied with ``penalty(..., reference_maps=...)`` (see
    :meth:`compute_reference_maps`) or precomputed per sample (:meth:`precompute_reference`,
    unless ``cached_reference`` is False: then the reference runs on every batch).
    """

    name = "delta"

    def __init__(
        self,
        reference: nn.Module,
        layer_names: Sequence[str],
        attention: Mapping[str, Tensor] | None = None,
        alpha: float = 0.01,
        beta: float = 0.01,
        *,
        new_param_names: Iterable[str] | None = None,
        cached_reference: bool = True,
    ) -> None:
        if not layer_names:
            raise ValueError(f"DELTA needs at least one layer name ({PARAMS_PATH}.layer_names).")
        check_non_negative(alpha=alpha, beta=beta)
        self.layer_names = list(layer_names)
        self.alpha, self.beta = float(alpha), float(beta)
        self.forced_new = list(new_param_names or ())
        self.cached_reference = bool(cached_reference)  # False: the reference runs per batch
        self.reference = copy.deepcopy(reference).eval().requires_grad_(False)
        self._reference_store: dict[str, Tensor] = {}
        for name in self.layer_names:
            module = submodule(self.reference, name, "DELTA reference layer_names")
            module.register_forward_hook(_capture_output(self._reference_store, name))
        self.attention = self._checked_attention(attention)
        self._model_store: dict[str, Tensor] = {}
        self._handles: list[RemovableHandle] = []
        self._sample_maps: dict[str, Tensor] = {}
        self._selected: Tensor | None = None
        self.new_names: list[str] = []
        self.shared_names: list[str] = []

    @property
    def needs_inputs(self) -> bool:
        """False once per-sample reference maps are precomputed (then the images are not needed)."""
        return not self._sample_maps

    def precompute_reference(self, inputs: Tensor, batch_size: int = 128,
                             max_bytes: int = 2 * 1024**3) -> bool:
        """Reference maps for every sample of a fixed (non-augmented) training set, kept on CPU.

        Afterwards call :meth:`select` with each batch's sample indices. Returns False (and keeps
        running the reference per batch) when the maps would take more than ``max_bytes``.
        """
        if not self.cached_reference:
            logger.info("DELTA reference maps computed per batch (cached_reference: false)")
            return False
        first = self.compute_reference_maps(inputs[:1])
        per_sample = sum(m[0].numel() * m.element_size() for m in first.values())
        if per_sample * len(inputs) > max_bytes:
            logger.info("DELTA reference maps would need %.1f GB: computed per batch instead",
                        per_sample * len(inputs) / 1024**3)
            return False
        chunks = [self.compute_reference_maps(inputs[i:i + batch_size])
                  for i in range(0, len(inputs), batch_size)]
        self._sample_maps = {n: torch.cat([c[n].cpu() for c in chunks]) for n in self.layer_names}
        return True

    def select(self, sample_indices: Tensor) -> None:
        """Which precomputed samples the next ``penalty`` call is about."""
        self._selected = sample_indices

    def _checked_attention(self, attention: Mapping[str, Tensor] | None) -> dict[str, Tensor]:
        if attention is None:
            return {}
        missing = [n for n in self.layer_names if n not in attention]
        if missing:
            raise ValueError(f"DELTA attention has no weights for layer(s) {missing}; compute "
                             "it for the same layer names (delta_channel_attention).")
        return {n: torch.as_tensor(attention[n]).detach().clone().float().flatten()
                for n in self.layer_names}

    def attach(self, model: nn.Module) -> None:
        """Hook the model's ``layer_names`` outputs and sort its kernels into shared / new."""
        self.detach()
        for name in self.layer_names:
            module = submodule(model, name, f"{PARAMS_PATH}.layer_names")
            self._handles.append(
                module.register_forward_hook(_capture_output(self._model_store, name))
            )
        shapes = {n: p.shape for n, p in self.reference.named_parameters()}
        self.new_names = new_kernel_names(model, shapes, self.forced_new)
        self.shared_names = [n for n in kernel_parameter_names(model) if n not in self.new_names]

    def detach(self) -> None:
        """Remove the model hooks and drop captured maps."""
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        self._model_store.clear()

    def compute_reference_maps(self, inputs: Tensor) -> dict[str, Tensor]:
        """Run the frozen reference on ``inputs``; its feature maps by layer name (no grad)."""
        first = next(self.reference.parameters(), None)
        if first is not None and first.device != inputs.device:
            self.reference.to(inputs.device)
        self.reference.eval()
        with torch.no_grad():
            self.reference(inputs)
        return {n: self._reference_store.pop(n) for n in self.layer_names}

    def _attention_weights(self, name: str, channels: int, like: Tensor) -> Tensor:
        weights = self.attention.get(name)
        if weights is None:
            return torch.full((channels,), 1.0 / channels, device=like.device, dtype=like.dtype)
        if weights.numel() != channels:
            raise ValueError(f"DELTA attention for {name!r} has {weights.numel()} weights but "
                             f"the feature map has {channels} channels.")
        if weights.device != like.device or weights.dtype != like.dtype:
            weights = self.attention[name] = weights.to(like.device, like.dtype)
        return weights

    def feature_map_distance(
        self, model_maps: Mapping[str, Tensor], reference_maps: Mapping[str, Tensor]
    ) -> Tensor:
        """``mean_b sum_j sum_c W_jc * mean_hw (FM - FM0)^2`` (without alpha)."""
        per_sample = None
        for name in self.layer_names:
            fm = model_maps[name]
            if name not in reference_maps:
                raise ValueError(f"DELTA: reference maps lack layer {name!r}.")
            fm0 = reference_maps[name].to(fm.device, fm.dtype)
            if fm0.shape != fm.shape:
                raise ValueError(f"DELTA: feature map {name!r} has shape {tuple(fm.shape)} in "
                                 f"the model but {tuple(fm0.shape)} in the reference.")
            squared = (fm - fm0).pow(2).reshape(fm.shape[0], fm.shape[1], -1).mean(dim=2)
            term = squared @ self._attention_weights(name, fm.shape[1], squared)
            per_sample = term if per_sample is None else per_sample + term
        return per_sample.mean()

    def penalty(
        self,
        model: nn.Module,
        inputs: Tensor,
        reference_maps: Mapping[str, Tensor] | None = None,
    ) -> Tensor:
        """DELTA penalty for the batch whose forward pass just ran on ``model``."""
        model_maps = {
            n: check_batch(self._model_store.get(n), inputs, "DELTA", f"feature maps {n!r}")
            for n in self.layer_names
        }
        if reference_maps is None and self._sample_maps and self._selected is not None:
            reference_maps = {n: m[self._selected] for n, m in self._sample_maps.items()}
        if reference_maps is None:
            reference_maps = self.compute_reference_maps(inputs)
        distance = self.feature_map_distance(model_maps, reference_maps)
        new_term = sum_of_squares(trainable(model, self.new_names, "DELTA"), inputs.device)
        return self.alpha * distance + self.beta / 2 * new_term

    def decay_exempt(self) -> set[str]:
        """Kernels shared with the reference (after ``attach``): decay would fight the anchor."""
        return set(self.shared_names)


class DeltaSettings(Schema):
    alpha: Weight = 0.01                # weight of the attention-weighted feature-map distance
    beta: Weight = 0.01                 # L2 toward zero of the new weights
    layer_names: list[str] | None = None  # feature-map modules (default: the attention's)
    new_param_names: list[str] | None = None  # weights that get beta
    cached_reference: bool = True       # the reference's feature maps computed once per image


def _build_delta(model: nn.Module, reference: nn.Module, settings: DeltaSettings,
                 attention: Mapping[str, Tensor] | None) -> DELTA:
    layer_names = settings.layer_names or list(attention or [])
    if not layer_names:
        raise ValueError(f"{PARAMS_PATH}.layer_names is required for 'delta' (module "
                         "names whose outputs are the stage feature maps).")
    return DELTA(reference, layer_names, attention, settings.alpha, settings.beta,
                 new_param_names=settings.new_param_names,
                 cached_reference=settings.cached_reference)


register_regularizer(RegularizerEntry(
    "delta", DeltaSettings, _build_delta, needs_anchor=True,
    description="DELTA: attention-weighted feature maps toward the pretrained network's"))
