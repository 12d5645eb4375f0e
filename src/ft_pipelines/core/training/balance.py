"""Class imbalance in training (``finetune.class_balance``): inverse-frequency class weights in
the cross-entropy, or a class-balanced epoch order; ``auto`` turns the weights on when the
training split's largest class outnumbers its smallest by more than ``IMBALANCE_RATIO``."""

from __future__ import annotations

import logging

import torch

logger = logging.getLogger(__name__)

#: ``auto`` balances when largest / smallest class count (training split) exceeds this
IMBALANCE_RATIO = 3.0


def class_counts(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    return torch.bincount(labels.long().cpu(), minlength=num_classes)[:num_classes]


def imbalance_ratio(labels: torch.Tensor, num_classes: int) -> float:
    """Largest / smallest count over the classes present in ``labels``."""
    counts = class_counts(labels, num_classes)
    present = counts[counts > 0]
    return float(present.max() / present.min()) if len(present) else 1.0


def resolve_class_balance(mode: str, labels: torch.Tensor, num_classes: int) -> tuple[str, str]:
    """(``none`` | ``weights`` | ``sampler``, why) for ``finetune.class_balance=mode``."""
    ratio = imbalance_ratio(labels, num_classes)
    if mode != "auto":
        return mode, f"class_balance={mode} (largest/smallest class ratio {ratio:.2f})"
    chosen = "weights" if ratio > IMBALANCE_RATIO else "none"
    relation = ">" if chosen == "weights" else "<="
    return chosen, (f"class_balance=auto -> {chosen}: largest/smallest class ratio {ratio:.2f} "
                    f"{relation} {IMBALANCE_RATIO:g}")


def class_weights(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """``n / (C n_c)`` per class (scikit-learn's "balanced"): every class weighs the same in
    total, and a balanced split gets weights 1. C counts the classes present; an absent class
    gets weight 1 (it is never a target; label smoothing still touches it)."""
    counts = class_counts(labels, num_classes).double()
    present = counts > 0
    weights = torch.ones(num_classes, dtype=torch.float64)
    weights[present] = counts.sum() / (int(present.sum()) * counts[present])
    return weights.float()


def balanced_order(labels: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """An epoch of ``len(labels)`` indices drawn with replacement, each class equally likely
    (each sample weighted 1 / its class count). Deterministic for a given generator state: the
    Trainer seeds it from (seed, epoch), the same on every rank."""
    counts = torch.bincount(labels.long().cpu())
    weights = 1.0 / counts[labels.long().cpu()].double()
    return torch.multinomial(weights, len(labels), replacement=True, generator=generator)
