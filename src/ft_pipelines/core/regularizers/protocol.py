"""What the training loop needs from a regularizer, with every hook declared (and a no-op
default), so the loop calls hooks instead of probing for them.

Lifecycle: ``attach(model)`` once before training (registers hooks); if the training inputs are
fixed (no random augmentation), ``precompute_reference(inputs)`` once with all of them; per batch
``select(sample_indices)``, the forward pass, then ``penalty(model, inputs)`` (a scalar added to
the task loss); ``detach()`` after training. ``decay_exempt()`` names the parameters the
optimizer must not weight-decay. Formulas and published settings: docs/references.md.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from torch import Tensor, nn

#: Where the regularizer settings live in the Kedro parameters (used in error messages).
PARAMS_PATH = "finetune.regularizer"


@runtime_checkable
class Regularizer(Protocol):
    """The regularizer protocol; subclass it to inherit the no-op defaults."""

    name: str
    #: True when ``penalty`` needs the network's real inputs (images): the loop must then not
    #: feed the model cached activations of a frozen prefix instead.
    needs_inputs: bool = False

    def attach(self, model: nn.Module) -> None:
        """Register hooks if needed (called once before training)."""

    def detach(self) -> None:
        """Remove the hooks registered by ``attach``."""

    def precompute_reference(self, inputs: Tensor) -> None:
        """Called once with every (normalised) training input when inputs never change."""

    def select(self, sample_indices: Tensor) -> None:
        """The training-set indices of the next batch (before its forward pass)."""

    def penalty(self, model: nn.Module, inputs: Tensor) -> Tensor:
        """Scalar penalty for the batch ``inputs``; called after the model's forward on it."""
        raise NotImplementedError

    def decay_exempt(self) -> set[str]:
        """Parameter names the optimizer must not weight-decay."""
        return set()
