"""Composition of regularizers and the factory that builds them from ``finetune.regularizer``."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any

import torch
from torch import Tensor, nn

from ft_pipelines.core.regularizers.bss import BSS
from ft_pipelines.core.regularizers.delta import DELTA
from ft_pipelines.core.regularizers.l2 import L2SP, L2Penalty
from ft_pipelines.core.regularizers.protocol import PARAMS_PATH, Regularizer
from ft_pipelines.core.utils import classifier_name

logger = logging.getLogger(__name__)



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


#: The settings each regulariser's builder takes: the one list (the parameter schema's
#: ``finetune.regularizer`` accepts exactly these, params/strategy_selection.py).
REGULARIZER_KEYS: dict[str, frozenset[str]] = {
    "none": frozenset(),
    "l2": frozenset({"beta"}),
    "l2_sp": frozenset({"alpha", "beta", "anchor_bn", "new_param_names"}),
    "delta": frozenset({"alpha", "beta", "layer_names", "new_param_names", "cached_reference"}),
}
#: Names accepted by :func:`build_regularizer`.
REGULARIZER_NAMES = tuple(REGULARIZER_KEYS)
_BSS_KEYS = {"eta", "k", "feature_module"}


def _build_bss(model: nn.Module, settings: Mapping[str, Any]) -> BSS:
    unknown = set(settings) - _BSS_KEYS
    if unknown:
        raise ValueError(f"Unknown key(s) {sorted(unknown)} in {PARAMS_PATH}.bss; "
                         f"allowed: {sorted(_BSS_KEYS)}.")
    feature_module = settings.get("feature_module") or classifier_name(model)
    logger.info("BSS on the inputs of %r", feature_module)
    return BSS(settings.get("eta", 0.001), settings.get("k", 1), feature_module=feature_module)


def _require_anchor(anchor_model: nn.Module | None, name: str) -> nn.Module:
    if anchor_model is None:
        raise ValueError(f"{PARAMS_PATH}.name={name!r} needs the pretrained model as "
                         "anchor_model.")
    return anchor_model


def build_regularizer(
    name: str,
    model: nn.Module,
    anchor_model: nn.Module | None = None,
    params: Mapping[str, Any] | None = None,
    attention: Mapping[str, Tensor] | None = None,
) -> CompositeRegularizer:
    """Build the regularizer named ``name`` (one of :data:`REGULARIZER_NAMES`).

    ``model``: the network to fine-tune (after surgery). ``anchor_model``: the pretrained
    network (required by ``l2_sp`` and ``delta``). ``params``: the ``finetune.regularizer``
    settings; a ``name`` key is ignored, other keys are checked:
    ``l2``: beta; ``l2_sp``: alpha, beta, anchor_bn, new_param_names; ``delta``: alpha, beta,
    layer_names (default: the keys of ``attention``), new_param_names, cached_reference;
    any name: ``bss: {eta, k, feature_module}`` adds BSS (feature_module defaults to the last
    nn.Linear). ``attention``: DELTA channel weights by layer (None: uniform).
    Returns a :class:`CompositeRegularizer` (named ``"none"`` and zero when nothing applies);
    call its ``attach(model)`` before building the optimizer so ``decay_exempt()`` is complete.
    """
    if name not in REGULARIZER_KEYS:
        raise ValueError(f"Unknown regularizer {name!r} in {PARAMS_PATH}.name; "
                         f"valid: {', '.join(REGULARIZER_NAMES)}.")
    settings = {k: v for k, v in (params or {}).items() if k != "name"}
    unknown = set(settings) - REGULARIZER_KEYS[name] - {"bss"}
    if unknown:
        raise ValueError(f"Unknown key(s) {sorted(unknown)} in {PARAMS_PATH} for {name!r}; "
                         f"allowed: {sorted(REGULARIZER_KEYS[name] | {'bss'})}.")
    bss_settings = settings.pop("bss", None)
    parts: list[Regularizer] = []
    if name == "l2":
        parts.append(L2Penalty(model, settings.get("beta", 0.01)))
    elif name == "l2_sp":
        anchor = _require_anchor(anchor_model, name).state_dict()
        parts.append(L2SP(model, anchor, **settings))
    elif name == "delta":
        layer_names = settings.pop("layer_names", None) or list(attention or [])
        if not layer_names:
            raise ValueError(f"{PARAMS_PATH}.layer_names is required for 'delta' (module "
                             "names whose outputs are the stage feature maps).")
        reference = _require_anchor(anchor_model, name)
        parts.append(DELTA(reference, layer_names, attention, **settings))
    if bss_settings:
        parts.append(_build_bss(model, bss_settings))
    return CompositeRegularizer(parts)
