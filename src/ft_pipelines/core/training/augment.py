"""Training-time augmentation: per-sample torchvision.transforms.v2 on uint8 images (random
resized crop, flip, TrivialAugmentWide / RandAugment / AutoAugment), random erasing after
normalisation, and MixUp / CutMix on the batch with the soft-target cross-entropy.

Everything draws from torch's global RNG, which the Trainer reseeds every epoch from
(seed, epoch): an epoch's augmentation does not depend on what ran before it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ft_pipelines.core.training.settings import Augment

Transform = Callable[[torch.Tensor], torch.Tensor]


def _per_sample(steps: list) -> Transform | None:
    """v2 draws one set of parameters per call: apply per sample, not per batch."""
    if not steps:
        return None
    from torchvision.transforms import v2

    transform = v2.Compose(steps)
    return lambda batch: torch.stack([transform(img) for img in batch])


def _policy(name: str) -> Any:
    from torchvision.transforms import v2

    policies = {"trivial": v2.TrivialAugmentWide, "randaugment": v2.RandAugment,
                "autoaugment": v2.AutoAugment}
    if name not in policies:
        raise ValueError(f"augment.policy={name!r}: use none, {', '.join(policies)}")
    return policies[name]()


@dataclass
class Augmentation:
    """What ``finetune.augment`` turns on; built only when something is (see
    :func:`build_augmentation`)."""

    pixels: Transform | None     # per sample, uint8 -> uint8
    erasing: Transform | None    # per sample, on the normalised batch
    mixup: float = 0.0           # Beta alpha; 0: off
    cutmix: float = 0.0
    description: str = ""

    @property
    def mixes(self) -> bool:
        return self.mixup > 0 or self.cutmix > 0

    def mix(self, x: torch.Tensor, y: torch.Tensor, num_classes: int, smoothing: float
            ) -> tuple[torch.Tensor, torch.Tensor]:
        """MixUp or CutMix (one of them per batch, 50/50 when both are on, as timm does)."""
        use_cutmix = self.cutmix > 0 and (self.mixup == 0 or bool(torch.rand(()) < 0.5))
        alpha = self.cutmix if use_cutmix else self.mixup
        lam = float(torch.distributions.Beta(alpha, alpha).sample())
        permutation = torch.randperm(len(y)).to(y.device)
        return (cutmix_batch if use_cutmix else mixup_batch)(
            x, y, permutation, lam, num_classes, smoothing)


def build_augmentation(spec: Augment | dict[str, Any], size: int) -> Augmentation | None:
    """What ``finetune.augment`` turns on, or None when nothing is (policy "none",
    probabilities and alphas 0 are off)."""
    from torchvision.transforms import v2

    spec = Augment.model_validate(spec) if isinstance(spec, dict) else spec
    steps = []
    if spec.random_resized_crop is not None:
        steps.append(v2.RandomResizedCrop(size, scale=tuple(spec.random_resized_crop.scale),
                                          antialias=True))
    if spec.horizontal_flip:
        steps.append(v2.RandomHorizontalFlip())
    if spec.policy != "none":
        steps.append(_policy(spec.policy))
    erasing, mixup, cutmix = spec.random_erasing, spec.mixup, spec.cutmix
    if not steps and not erasing and not mixup and not cutmix:
        return None
    on = [k for k in ("random_resized_crop", "horizontal_flip") if getattr(spec, k)]
    on += [f"{k}={v}" for k, v in (("policy", spec.policy), ("random_erasing", erasing),
                                     ("mixup", mixup), ("cutmix", cutmix)) if v and v != "none"]
    return Augmentation(_per_sample(steps),
                        _per_sample([v2.RandomErasing(erasing)]) if erasing else None,
                        mixup, cutmix, ", ".join(on))


def one_hot_targets(y: torch.Tensor, num_classes: int, smoothing: float) -> torch.Tensor:
    """Label-smoothed one-hot rows: 1 - smoothing + smoothing/C on the class, smoothing/C off."""
    hot = nn.functional.one_hot(y, num_classes).float()
    return hot * (1.0 - smoothing) + smoothing / num_classes


def mixup_batch(x: torch.Tensor, y: torch.Tensor, permutation: torch.Tensor, lam: float,
                num_classes: int, smoothing: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """``lam x + (1 - lam) x[perm]`` and the same mixture of the (smoothed) one-hot targets."""
    targets = one_hot_targets(y, num_classes, smoothing)
    mixed = x * lam + x[permutation] * (1.0 - lam)
    return mixed, targets * lam + targets[permutation] * (1.0 - lam)


def cutmix_batch(x: torch.Tensor, y: torch.Tensor, permutation: torch.Tensor, lam: float,
                 num_classes: int, smoothing: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """A box of area ~(1 - lam) pasted from ``x[perm]``; the targets mix by the box's actual
    area (clipped at the border), as in Yun et al. 2019 / timm."""
    height, width = x.shape[-2:]
    ratio = math.sqrt(1.0 - lam)
    cut_h, cut_w = int(height * ratio), int(width * ratio)
    cy, cx = int(torch.randint(height, ())), int(torch.randint(width, ()))
    top, bottom = max(cy - cut_h // 2, 0), min(cy + cut_h // 2, height)
    left, right = max(cx - cut_w // 2, 0), min(cx + cut_w // 2, width)
    mixed = x.clone()
    mixed[..., top:bottom, left:right] = x[permutation][..., top:bottom, left:right]
    kept = 1.0 - (bottom - top) * (right - left) / (height * width)
    targets = one_hot_targets(y, num_classes, smoothing)
    return mixed, targets * kept + targets[permutation] * (1.0 - kept)


def summed_loss(logits: torch.Tensor, target: torch.Tensor, class_weights: torch.Tensor | None,
                smoothing: float) -> torch.Tensor:
    """Cross-entropy summed over the batch: hard labels (label smoothing, class weights as
    torch's ``cross_entropy``), or soft targets (rows summing to 1, smoothing already in them):
    ``-sum_i sum_c w_c t_ic log p_ic``."""
    if target.dtype.is_floating_point:
        log_p = nn.functional.log_softmax(logits.float(), dim=1)
        weighted = target if class_weights is None else target * class_weights
        return -(weighted * log_p).sum()
    return nn.functional.cross_entropy(logits, target, weight=class_weights, reduction="sum",
                                       label_smoothing=smoothing)
