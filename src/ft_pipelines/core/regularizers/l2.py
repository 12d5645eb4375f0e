"""L2 toward zero and L2-SP toward the pretrained weights (docs/references.md, "L2-SP")."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping

import torch
from torch import Tensor, nn

from ft_pipelines.core.regularizers.common import (
    check_non_negative,
    kernel_parameter_names,
    new_kernel_names,
    sum_of_squares,
    trainable,
)
from ft_pipelines.core.regularizers.protocol import Regularizer
from ft_pipelines.core.regularizers.registry import RegularizerEntry, register_regularizer
from ft_pipelines.core.utils.schema import Schema, Weight

logger = logging.getLogger(__name__)


class L2Penalty(Regularizer):
    """``beta/2 * sum ||w||^2`` over the trainable conv/linear kernels (or ``param_names``)."""

    name = "l2"
    needs_inputs = False

    def __init__(
        self, model: nn.Module, beta: float, param_names: Iterable[str] | None = None
    ) -> None:
        check_non_negative(beta=beta)
        self.beta = float(beta)
        self.param_names = (
            list(param_names) if param_names is not None else kernel_parameter_names(model)
        )
        trainable(model, self.param_names, "L2Penalty")  # fail now on a bad name

    def attach(self, model: nn.Module) -> None:
        """Nothing to hook."""

    def detach(self) -> None:
        """Nothing to unhook."""

    def penalty(self, model: nn.Module, inputs: Tensor) -> Tensor:
        """``beta/2 * sum ||w||^2`` over the selected weights that require grad."""
        weights = trainable(model, self.param_names, "L2Penalty")
        return self.beta / 2 * sum_of_squares(weights, inputs.device)

    def decay_exempt(self) -> set[str]:
        """Empty: this penalty pulls toward zero, like weight decay, so there is no conflict."""
        return set()


class L2SP(Regularizer):
    """L2-SP (Li et al. 2018): ``alpha/2 * sum_shared ||w - w0||^2 + beta/2 * sum_new ||w||^2``.

    Shared: conv/linear kernels (and norm affine weight/bias if ``anchor_bn``) found in
    ``anchor`` with the same shape. New: kernels absent from ``anchor`` or shape-mismatched (the
    new head), plus ``new_param_names``. Biases are not penalised. ``channel_strength[name]``
    (shape ``[out_channels]``) scales each output channel's squared distance, e.g. in proportion
    to channel importance after pruning. Only weights that require grad at penalty time count.
    """

    name = "l2_sp"
    needs_inputs = False

    def __init__(
        self,
        model: nn.Module,
        anchor: Mapping[str, Tensor],
        alpha: float = 0.1,
        beta: float = 0.01,
        *,
        new_param_names: set[str] | None = None,
        anchor_bn: bool = False,
        channel_strength: Mapping[str, Tensor] | None = None,
    ) -> None:
        check_non_negative(alpha=alpha, beta=beta)
        self.alpha, self.beta = float(alpha), float(beta)
        shapes = {k: v.shape for k, v in anchor.items()}
        self.new_names = new_kernel_names(model, shapes, new_param_names or ())
        params = dict(model.named_parameters())
        # Clones: the anchor must not share storage with weights an optimizer will move.
        self.anchor: dict[str, Tensor] = {
            n: anchor[n].detach().clone()
            for n in kernel_parameter_names(model, include_norm=anchor_bn)
            if n not in self.new_names and n in anchor and anchor[n].shape == params[n].shape
        }
        if not self.anchor:
            logger.warning("L2-SP: no parameter of the model matches the anchor by name and "
                           "shape; only the new-parameter term will apply.")
        self.channel_strength = self._checked_strength(channel_strength or {})
        logger.info("L2-SP: %d anchored tensors, %d new", len(self.anchor), len(self.new_names))

    def _checked_strength(self, strength: Mapping[str, Tensor]) -> dict[str, Tensor]:
        checked = {}
        for name, given in strength.items():
            if name not in self.anchor:
                raise ValueError(f"channel_strength: {name!r} is not an anchored parameter; "
                                 f"anchored: {sorted(self.anchor)[:8]}...")
            values = torch.as_tensor(given).detach().clone().float().flatten()
            if values.numel() != self.anchor[name].shape[0]:
                raise ValueError(f"channel_strength[{name!r}] has {values.numel()} values but "
                                 f"the weight has {self.anchor[name].shape[0]} output channels.")
            checked[name] = values
        return checked

    def attach(self, model: nn.Module) -> None:
        """Nothing to hook."""

    def detach(self) -> None:
        """Nothing to unhook."""

    def _distance(self, name: str, weight: Tensor) -> Tensor:
        anchor = self.anchor[name]
        if anchor.shape != weight.shape:
            raise ValueError(f"L2-SP: {name!r} has shape {tuple(weight.shape)} but its anchor "
                             f"{tuple(anchor.shape)}; rebuild the regularizer after pruning.")
        if anchor.device != weight.device or anchor.dtype != weight.dtype:
            anchor = self.anchor[name] = anchor.to(weight.device, weight.dtype)  # move once
        squared = (weight - anchor).pow(2)
        strength = self.channel_strength.get(name)
        if strength is None:
            return squared.sum()
        strength = self.channel_strength[name] = strength.to(weight.device, weight.dtype)
        return (squared.reshape(squared.shape[0], -1).sum(dim=1) * strength).sum()

    def penalty(self, model: nn.Module, inputs: Tensor) -> Tensor:
        """Weighted distance of shared weights to the anchor plus the L2 of the new ones."""
        params = dict(model.named_parameters())
        shared = [
            self._distance(n, params[n])
            for n in self.anchor
            if n in params and params[n].requires_grad
        ]
        shared_term = torch.stack(shared).sum() if shared else torch.zeros((), device=inputs.device)
        new_term = sum_of_squares(trainable(model, self.new_names, "L2-SP"), inputs.device)
        return self.alpha / 2 * shared_term + self.beta / 2 * new_term

    def decay_exempt(self) -> set[str]:
        """The anchored names: weight decay would pull them to zero, against the anchor."""
        return set(self.anchor)


class L2Settings(Schema):
    beta: Weight = 0.01                 # weight decay toward zero on the trained kernels


class L2SPSettings(Schema):
    alpha: Weight = 0.1                 # pull of the pretrained weights toward their start
    beta: Weight = 0.01                 # L2 toward zero of the new weights
    anchor_bn: bool = False             # anchor the normalisation layers too
    new_param_names: list[str] | None = None  # weights that get beta (default: not in anchor)


register_regularizer(RegularizerEntry(
    "l2", L2Settings, lambda model, _anchor, s, _attention: L2Penalty(model, s.beta),
    description="L2 toward zero (weight decay as a penalty)"))
register_regularizer(RegularizerEntry(
    "l2_sp", L2SPSettings, needs_anchor=True, description="L2 toward the pretrained weights",
    build=lambda model, anchor, s, _attention: L2SP(
        model, anchor.state_dict(), s.alpha, s.beta, new_param_names=s.new_param_names,
        anchor_bn=s.anchor_bn)))
