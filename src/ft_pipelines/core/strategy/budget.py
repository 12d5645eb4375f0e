"""Training budgets in optimiser steps: a tiny data set still gets a meaningful number of steps."""

from __future__ import annotations

import math
from typing import Any


def resolve_budget(training: dict[str, Any], train_images: int, batch_size: int) -> dict[str, Any]:
    """steps = max(epochs x steps_per_epoch, min_steps), trained as whole epochs.

    The trainer works in epochs, so the run trains ``ceil(steps / steps_per_epoch)`` epochs
    (``trained_steps`` >= ``steps``: at most one epoch more than asked).
    """
    if train_images < 1 or batch_size < 1:
        raise ValueError(f"train_images={train_images}, batch_size={batch_size}: both must be >= 1")
    steps_per_epoch = math.ceil(train_images / batch_size)
    epochs, min_steps = int(training["epochs"]), int(training["min_steps"])
    steps = max(epochs * steps_per_epoch, min_steps)
    resolved_epochs = math.ceil(steps / steps_per_epoch)
    if steps > epochs * steps_per_epoch:
        reason = (f"{epochs} epochs x {steps_per_epoch} steps = {epochs * steps_per_epoch} < "
                  f"min_steps {min_steps}: {resolved_epochs} epochs "
                  f"({resolved_epochs * steps_per_epoch} steps)")
    else:
        reason = (f"{epochs} epochs x {steps_per_epoch} steps = {steps} steps "
                  f"(>= min_steps {min_steps})")
    return {
        "epochs_configured": epochs,
        "min_steps": min_steps,
        "batch_size": int(batch_size),
        "train_images": int(train_images),
        "steps_per_epoch": steps_per_epoch,
        "steps": steps,
        "epochs": resolved_epochs,
        "trained_steps": resolved_epochs * steps_per_epoch,
        "reason": reason,
    }
