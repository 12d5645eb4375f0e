"""Knowledge distillation from the fine-tuned (unpruned) model into the pruned one, as a
regulariser the Trainer already calls (Hinton et al. 2015):

    loss = (1 - alpha) * CE(student, y)
           + alpha * T^2 * KL(softmax(teacher / T) || softmax(student / T))

The Trainer adds a regulariser's penalty to its own (plain, mean) cross-entropy, so the penalty
here is ``alpha * (T^2 * KL - CE)``: the total is exactly the formula, with no change to the
training loop. It sees the student's logits through a forward hook (the Trainer's forward of
this batch, as DELTA captures feature maps) and the labels through ``select`` (the batch's
training-set indices). Valid for the loss the pruning stage trains with: plain cross-entropy
(no label smoothing, class weights or mixing), which :func:`check_plain_loss` enforces.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F  # noqa: N812 (the usual name)

from ft_pipelines.core.regularizers import Regularizer
from ft_pipelines.core.regularizers.common import check_batch
from ft_pipelines.core.training.settings import TrainConfig

CACHED_LOGITS_MAX = 25_000_000  # float32 teacher logits kept (100 MB): samples x classes


def distillation_loss(student: Tensor, teacher: Tensor, labels: Tensor, alpha: float,
                      temperature: float) -> Tensor:
    """The formula above (batch mean; KL in nats, scaled by T^2 so its gradients keep the
    magnitude of the cross-entropy's as T changes)."""
    kl = F.kl_div(F.log_softmax(student / temperature, dim=1),
                  F.log_softmax(teacher / temperature, dim=1),
                  log_target=True, reduction="batchmean")
    return (1 - alpha) * F.cross_entropy(student, labels) + alpha * temperature ** 2 * kl


class Distillation(Regularizer):
    """``alpha * (T^2 * KL(teacher || student) - CE)``: with the Trainer's cross-entropy the
    distillation loss. ``teacher`` is copied, frozen and kept in eval mode; ``labels`` are the
    training split's (indexed by the Trainer's sample indices).

    The pruning stage trains without augmentation (:func:`check_plain_loss`), so a sample's
    input, and the frozen teacher's logits for it, are the same every epoch: they are computed
    the first time the sample is seen and reused after (the teacher's forward was about a
    third of the recovery's time on the demo)."""

    name = "distillation"
    needs_inputs = True  # the teacher must see the real images of each batch

    def __init__(self, teacher: nn.Module, labels: Tensor, alpha: float = 0.5,
                 temperature: float = 4.0) -> None:
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"pruning.distill.alpha must be in [0, 1], got {alpha}.")
        if temperature <= 0:
            raise ValueError(f"pruning.distill.temperature must be > 0, got {temperature}.")
        self.teacher = copy.deepcopy(teacher).eval().requires_grad_(False)
        self.labels = torch.as_tensor(labels)
        self.alpha, self.temperature = float(alpha), float(temperature)
        self._teacher_logits: Tensor | None = None  # [N, K] per training sample, once seen
        self._seen = torch.zeros(len(self.labels), dtype=torch.bool)
        self._logits: Tensor | None = None
        self._indices: Tensor | None = None
        self._hook: Any = None

    def attach(self, model: nn.Module) -> None:
        self.detach()
        self._hook = model.register_forward_hook(self._capture)

    def _capture(self, module: nn.Module, args: Any, output: Tensor) -> None:
        self._logits = output

    def detach(self) -> None:
        if self._hook is not None:
            self._hook.remove()
            self._hook = None
        self._logits = None

    def select(self, sample_indices: Tensor) -> None:
        self._indices = sample_indices

    def penalty(self, model: nn.Module, inputs: Tensor) -> Tensor:
        student = check_batch(self._logits, inputs, "Distillation", "logits").float()
        if self._indices is None or len(self._indices) != len(student):
            raise RuntimeError("Distillation: select(sample_indices) must name this batch's "
                               "samples before its forward pass.")
        teacher = self._teacher_output(inputs).to(student.device)
        labels = self.labels[self._indices.cpu()].to(student.device)
        return (distillation_loss(student, teacher, labels, self.alpha, self.temperature)
                - F.cross_entropy(student, labels))


    def _teacher_output(self, inputs: Tensor) -> Tensor:
        """The teacher's logits for this batch: from the cache where every sample was seen."""
        indices = self._indices.cpu()
        if self._teacher_logits is not None and bool(self._seen[indices].all()):
            return self._teacher_logits[indices]
        self.teacher.to(inputs.device)
        size = getattr(getattr(self.teacher, "backbone_cfg", None), "input_size", None)
        if size is not None and inputs.shape[-1] != size:
            # a student at a smaller input size (the search's input steps): the teacher sees
            # the batch at its own size, as it was trained
            inputs = F.interpolate(inputs, size=(size, size), mode="bilinear",
                                   align_corners=False)
        with torch.no_grad():  # not inference_mode: the loss saves these for its backward
            logits = self.teacher(inputs).float().cpu()
        if self._teacher_logits is None:
            if len(self.labels) * logits.shape[1] > CACHED_LOGITS_MAX:
                return logits  # too many samples x classes to keep: the teacher runs each time
            self._teacher_logits = torch.zeros(len(self.labels), logits.shape[1])
        self._teacher_logits[indices] = logits
        self._seen[indices] = True
        return logits


def check_plain_loss(config: TrainConfig) -> None:
    """The penalty cancels part of the Trainer's cross-entropy: only the plain loss qualifies."""
    if config.label_smoothing or config.augment.on or config.class_balance != "none":
        raise ValueError("pruning.distill needs the plain cross-entropy (no label smoothing, "
                         "augmentation or class balance) in the pruning stage's training; "
                         "set pruning.distill: null to train without it.")
