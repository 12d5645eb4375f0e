"""Distillation from the fine-tuned model: with the Trainer's cross-entropy, the regulariser's
penalty makes the loss (1 - alpha) CE + alpha T^2 KL(softmax(teacher/T) || softmax(student/T))."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from ft_pipelines.core.pruning.distill import Distillation, check_plain_loss, distillation_loss
from ft_pipelines.core.regularizers import CompositeRegularizer
from ft_pipelines.core.training import TrainConfig


def linear(bias: list[float]) -> nn.Linear:
    layer = nn.Linear(2, 2)
    with torch.no_grad():
        layer.weight.zero_()
        layer.bias.copy_(torch.tensor(bias))
    return layer


def test_distillation_makes_the_loss_the_formula_on_a_hand_computed_case():
    # student logits [0, 0]; teacher [2 ln 3, 0] -> at T = 2 soft targets [3/4, 1/4]
    student, teacher = linear([0.0, 0.0]), linear([2 * math.log(3), 0.0])
    labels = torch.tensor([1, 0, 0])  # the batch is sample 1: label 0
    regularizer = Distillation(teacher, labels, alpha=0.5, temperature=2.0)
    x = torch.randn(1, 2)
    regularizer.attach(student)
    regularizer.select(torch.tensor([1]))
    logits = student(x)
    ce = nn.functional.cross_entropy(logits, torch.tensor([0]))  # what the Trainer computes
    total = ce + regularizer.penalty(student, x)
    kl = 0.75 * math.log(0.75 / 0.5) + 0.25 * math.log(0.25 / 0.5)
    expected = 0.5 * math.log(2) + 0.5 * 2.0 ** 2 * kl
    assert total.item() == pytest.approx(expected, rel=1e-6)
    assert distillation_loss(logits, teacher(x), torch.tensor([0]), 0.5, 2.0).item() == (
        pytest.approx(expected, rel=1e-6))
    total.backward()  # the student learns from it; the frozen teacher does not
    assert student.bias.grad is not None and teacher.bias.grad is None
    regularizer.detach()
    student(x)
    with pytest.raises(RuntimeError, match="no logits captured"):
        regularizer.penalty(student, x)


def test_without_a_teacher_signal_alpha_zero_leaves_the_cross_entropy():
    student, teacher = linear([1.0, -1.0]), linear([-3.0, 3.0])
    regularizer = CompositeRegularizer([Distillation(teacher, torch.tensor([0]), alpha=0.0)])
    regularizer.attach(student)
    regularizer.select(torch.tensor([0]))
    x = torch.randn(1, 2)
    student(x)
    assert regularizer.penalty(student, x).item() == pytest.approx(0.0, abs=1e-7)
    assert regularizer.needs_inputs  # the Trainer must feed images, not cached activations


def test_bad_settings_are_named():
    with pytest.raises(ValueError, match=r"pruning.distill.alpha"):
        Distillation(linear([0, 0]), torch.tensor([0]), alpha=1.5)
    with pytest.raises(ValueError, match=r"pruning.distill.temperature"):
        Distillation(linear([0, 0]), torch.tensor([0]), temperature=0)
    with pytest.raises(ValueError, match="pruning.distill: null"):
        check_plain_loss(TrainConfig(label_smoothing=0.1))


def test_the_teacher_runs_once_per_sample_and_its_logits_are_reused():
    """Without augmentation a sample's input is fixed, so the frozen teacher's logits for it
    are computed the first time and reused: same penalty, one teacher call per new sample."""
    student, teacher = linear([0.0, 0.0]), linear([2 * math.log(3), 0.0])
    regularizer = Distillation(teacher, torch.tensor([1, 0, 0, 1]), alpha=0.5, temperature=2.0)
    calls = []
    regularizer.teacher.register_forward_hook(lambda *_: calls.append(1))
    regularizer.attach(student)
    x = torch.randn(4, 2)

    def penalty(indices: list[int]) -> float:
        regularizer.select(torch.tensor(indices))
        student(x[indices])
        return regularizer.penalty(student, x[indices]).item()

    first = penalty([0, 1])
    assert penalty([0, 1]) == pytest.approx(first, rel=1e-6) and len(calls) == 1
    penalty([1, 2])  # sample 2 is new: the teacher runs on this batch
    penalty([2, 0])
    assert len(calls) == 2


class _SizeRecorder(nn.Module):
    """A teacher trained at 48 px that records the input sizes it was given."""

    def __init__(self) -> None:
        super().__init__()
        self.backbone_cfg = type("Cfg", (), {"input_size": 48})()
        self.seen: list[tuple[int, ...]] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append(tuple(x.shape[-2:]))
        return x.mean(dim=(2, 3))[:, :2]


def test_a_student_at_a_smaller_input_is_taught_by_the_teacher_at_its_own_size():
    """The search's input steps train the student at 32 px; the teacher sees 48 px."""
    teacher = _SizeRecorder()
    student = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(3, 2))
    regularizer = Distillation(teacher, torch.tensor([0, 1]), alpha=0.5, temperature=2.0)
    x = torch.randn(2, 3, 32, 32)
    regularizer.attach(student)
    regularizer.select(torch.tensor([0, 1]))
    student(x)
    assert torch.isfinite(regularizer.penalty(student, x))
    assert regularizer.teacher.seen == [(48, 48)]
