"""Composition of regularizers and the one builder of ``finetune.regularizer`` (+ ``finetune.bss``)
from the registry."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any

import torch
from torch import Tensor, nn

from ft_pipelines.core.regularizers.bss import BSS
from ft_pipelines.core.regularizers.protocol import PARAMS_PATH, Regularizer
from ft_pipelines.core.regularizers.registry import regularizer_entry, validated_settings
from ft_pipelines.core.utils import classifier_name
from ft_pipelines.core.utils.schema import Count, Schema, Weight, override

logger = logging.getLogger(__name__)



def _require_anchor(anchor_model: nn.Module | None, name: str) -> nn.Module:
    if anchor_model is None:
        raise ValueError(f"{PARAMS_PATH}.name={name!r} needs the pretrained model as "
                         "anchor_model.")
    return anchor_model


class CompositeRegularizer(Regularizer):
    """Sum of several regularizers; with none, a zero penalty named ``"none"``."""

    def __init__(self, regularizers: Iterable[Regularizer]) -> None:
        self.regularizers = list(regularizers)
        self.name = "+".join(r.name for r in self.regularizers) or "none"

    @property
    def needs_inputs(self) -> bool:
        """True while some part must see the (normalised) images of each batch."""
        return any(r.needs_inputs for r in self.regularizers)

    def precompute_reference(self, inputs: Tensor) -> None:
        """Let every part precompute per-sample targets (DELTA does; others ignore it)."""
        for regularizer in self.regularizers:
            regularizer.precompute_reference(inputs)

    def select(self, sample_indices: Tensor) -> None:
        """Forward the batch's sample indices to every part."""
        for regularizer in self.regularizers:
            regularizer.select(sample_indices)

    def attach(self, model: nn.Module) -> None:
        """Attach every part."""
        for regularizer in self.regularizers:
            regularizer.attach(model)

    def detach(self) -> None:
        """Detach every part."""
        for regularizer in self.regularizers:
            regularizer.detach()

    def penalty_terms(self, model: nn.Module, inputs: Tensor) -> dict[str, Tensor]:
        """Each part's penalty by name (for logging)."""
        return {r.name: r.penalty(model, inputs) for r in self.regularizers}

    def penalty(self, model: nn.Module, inputs: Tensor) -> Tensor:
        """Sum of the parts' penalties."""
        terms = list(self.penalty_terms(model, inputs).values())
        return torch.stack(terms).sum() if terms else torch.zeros((), device=inputs.device)

    def decay_exempt(self) -> set[str]:
        """Union of the parts' exemptions."""
        return set().union(*(r.decay_exempt() for r in self.regularizers))


class BSSSettings(Schema):
    """``finetune.bss``: Batch Spectral Shrinkage, the k smallest singular values of the
    features penalised (added to any regulariser)."""

    eta: Weight = 0.001
    k: Count = 1
    feature_module: str | None = override("module whose input are the features (default: "
                                          "the last nn.Linear)")


def _build_bss(model: nn.Module, settings: Mapping[str, Any]) -> BSS:
    unknown = set(settings) - set(BSSSettings.model_fields)
    if unknown:
        raise ValueError(f"Unknown key(s) {sorted(unknown)} in {PARAMS_PATH}.bss; "
                         f"allowed: {sorted(BSSSettings.model_fields)}.")
    bss = BSSSettings.model_validate(dict(settings))
    feature_module = bss.feature_module or classifier_name(model)
    logger.info("BSS on the inputs of %r", feature_module)
    return BSS(bss.eta, bss.k, feature_module=feature_module)


def build_regularizer(
    name: str,
    model: nn.Module,
    anchor_model: nn.Module | None = None,
    params: Mapping[str, Any] | None = None,
    attention: Mapping[str, Tensor] | None = None,
) -> CompositeRegularizer:
    """Build the registered regularizer ``name`` (``core/regularizers/registry.py``).

    ``model``: the network to fine-tune (after surgery). ``anchor_model``: the pretrained
    network (required by the entries that need an anchor: ``l2_sp``, ``delta``). ``params``:
    the ``finetune.regularizer`` settings, checked against the entry's settings model (whose
    defaults fill the rest); a ``name`` key is ignored; ``bss: {eta, k, feature_module}`` adds
    BSS to any regulariser. ``attention``: DELTA channel weights by layer (None: uniform).
    Returns a :class:`CompositeRegularizer` (named ``"none"`` and zero when nothing applies);
    call its ``attach(model)`` before building the optimizer so ``decay_exempt()`` is complete.
    """
    entry = regularizer_entry(name)
    settings = {k: v for k, v in (params or {}).items() if k not in ("name", "bss")}
    bss_settings = (params or {}).get("bss")
    anchor = _require_anchor(anchor_model, name) if entry.needs_anchor else anchor_model
    built = entry.build(model, anchor, validated_settings(name, settings), attention)
    parts: list[Regularizer] = [] if built is None else [built]
    if bss_settings:
        parts.append(_build_bss(model, bss_settings))
    return CompositeRegularizer(parts)
