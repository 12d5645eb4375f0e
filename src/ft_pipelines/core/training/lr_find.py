"""The learning-rate range test (Smith 2017, fastai's ``lr_find``): train for ~100 steps while
the rate grows exponentially, follow the smoothed loss, stop when it diverges, pick a rate.

The pick is fastai's "minimum" suggestion: a tenth of the rate where the smoothed loss was
lowest (the rate at the minimum is already on the edge of divergence). The steepest-descent
point is reported next to it. The caller restores model and optimizer afterwards.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from matplotlib.figure import Figure

logger = logging.getLogger(__name__)

START_LR, END_LR, STEPS = 1e-6, 1.0, 100
SMOOTHING = 0.98          # exponential moving average of the loss (bias-corrected)
DIVERGENCE = 4.0          # stop once the smoothed loss exceeds this many times its minimum


@dataclass
class LRFinding:
    """The sweep (rates, smoothed losses) and the picks."""

    lrs: list[float] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)
    lr_min: float = math.nan         # where the smoothed loss was lowest
    lr_steep: float = math.nan       # steepest descent of the smoothed loss vs log(lr)

    @property
    def suggestion(self) -> float:
        return self.lr_min / 10.0


def lr_range_test(step: Callable[[int, float], float], start: float = START_LR,
                  end: float = END_LR, steps: int = STEPS) -> LRFinding:
    """Call ``step(i, lr)`` (one training step at ``lr``; returns its loss) for exponentially
    growing rates from ``start`` to ``end``; stops early when the loss diverges or is not finite.
    """
    if not 0 < start < end or steps < 2:
        raise ValueError(f"lr range test needs 0 < start < end and >= 2 steps, got {start}, "
                         f"{end}, {steps}")
    found, average, best = LRFinding(), 0.0, math.inf
    for i in range(steps):
        lr = start * (end / start) ** (i / (steps - 1))
        loss = float(step(i, lr))
        if not math.isfinite(loss):
            break
        average = SMOOTHING * average + (1 - SMOOTHING) * loss
        smoothed = average / (1 - SMOOTHING ** (i + 1))
        found.lrs.append(lr)
        found.losses.append(smoothed)
        best = min(best, smoothed)
        if i > 0 and smoothed > DIVERGENCE * best:
            break
    if not found.lrs:
        raise FloatingPointError("lr range test: the loss was not finite at the first step "
                                 f"(lr={start}); check the data and the model")
    lowest = min(range(len(found.losses)), key=found.losses.__getitem__)
    found.lr_min = found.lrs[lowest]
    if lowest == len(found.lrs) - 1:
        logger.warning("LR range test: the loss was still falling at the end of the sweep "
                       "(lr=%.3g); the pick (a tenth of it) may be conservative", found.lrs[-1])
    found.lr_steep = _steepest(found)
    return found


def _steepest(found: LRFinding) -> float:
    """The rate where the smoothed loss falls fastest per unit of log(lr), before the minimum."""
    lowest = min(range(len(found.losses)), key=found.losses.__getitem__)
    if lowest < 1:
        return found.lrs[0]
    slopes = [(found.losses[i + 1] - found.losses[i])
              / (math.log(found.lrs[i + 1]) - math.log(found.lrs[i])) for i in range(lowest)]
    return found.lrs[min(range(len(slopes)), key=slopes.__getitem__)]


def lr_find_figure(found: LRFinding) -> Figure:
    """Smoothed loss against the learning rate (log scale), with the picks marked."""
    from matplotlib.figure import Figure  # only when a figure is asked for

    figure = Figure(figsize=(5, 3.5))
    ax = figure.subplots()
    ax.plot(found.lrs, found.losses)
    ax.set_xscale("log")
    ax.axvline(found.suggestion, color="tab:red", linestyle="--",
               label=f"chosen {found.suggestion:.2g} (min/10)")
    ax.axvline(found.lr_steep, color="tab:gray", linestyle=":",
               label=f"steepest {found.lr_steep:.2g}")
    ax.set(xlabel="learning rate", ylabel="smoothed training loss", title="LR range test")
    ax.legend()
    figure.tight_layout()
    return figure
