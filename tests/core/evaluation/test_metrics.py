"""Tests for ft_pipelines.core.evaluation (metrics, cost) and the counters in core.utils."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    f1_score,
    top_k_accuracy_score,
)
from torch import nn

from ft_pipelines.core import utils
from ft_pipelines.core.evaluation import cost, metrics


def _random_probs(n: int, k: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(n, k))
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    labels = rng.integers(0, k, size=n)
    return probs, labels


def _tiny_net(n_classes: int = 4) -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1, bias=False),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(8, n_classes),
    )


def test_classification_metrics_match_sklearn() -> None:
    probs, labels = _random_probs(300, 8)
    names = [f"c{i}" for i in range(8)]
    result = metrics.classification_metrics(probs, labels, names)
    predictions = probs.argmax(axis=1)
    assert result["top1"] == pytest.approx(accuracy_score(labels, predictions))
    assert result["top5"] == pytest.approx(
        top_k_accuracy_score(labels, probs, k=5, labels=list(range(8)))
    )
    assert result["macro_f1"] == pytest.approx(f1_score(labels, predictions, average="macro"))
    assert result["per_class"]["c3"]["support"] == int((labels == 3).sum())
    assert 0.0 <= result["ece"] <= 1.0


def test_balanced_accuracy_is_the_mean_recall_of_the_classes_present() -> None:
    probs, labels = _random_probs(200, 5, seed=2)
    labels[labels == 4] = 0  # class 4 absent, class 0 twice as frequent
    result = metrics.classification_metrics(probs, labels, [f"c{i}" for i in range(5)])
    predictions = probs.argmax(axis=1)
    assert result["balanced_accuracy"] == pytest.approx(
        balanced_accuracy_score(labels, predictions))
    recalls = [result["per_class"][f"c{i}"]["recall"] for i in range(4)]
    assert result["balanced_accuracy"] == pytest.approx(np.mean(recalls))


def test_top5_is_none_with_few_classes() -> None:
    probs, labels = _random_probs(50, 5)
    result = metrics.classification_metrics(probs, labels, list("abcde"))
    assert result["top5"] is None


def test_confusion_rows_are_true_labels_and_json_serialisable() -> None:
    # Two samples of class 0, both predicted as class 1; one class-1 sample predicted right.
    probs = np.array([[0.2, 0.8, 0.0], [0.1, 0.9, 0.0], [0.1, 0.7, 0.2]])
    labels = np.array([0, 0, 1])
    result = metrics.classification_metrics(probs, labels, ["a", "b", "c"])
    assert result["confusion"] == [[0, 2, 0], [0, 1, 0], [0, 0, 0]]
    assert result["per_class"]["b"]["precision"] == pytest.approx(1 / 3)
    assert result["per_class"]["a"]["recall"] == 0.0
    decoded = json.loads(json.dumps(result))
    assert decoded["confusion"] == result["confusion"]
    assert type(result["top1"]) is float


def test_classification_metrics_rejects_wrong_class_count() -> None:
    probs, labels = _random_probs(10, 3)
    with pytest.raises(ValueError, match="class names"):
        metrics.classification_metrics(probs, labels, ["a", "b"])


def test_ece_zero_when_confident_and_correct() -> None:
    labels = np.array([0, 1, 2, 1])
    probs = np.eye(3)[labels]
    assert metrics.expected_calibration_error(probs, labels) == 0.0


def test_ece_hand_computed() -> None:
    # Confidences 0.95 (right), 0.85 (wrong), 0.75 (right), 0.55 (right): four separate bins
    # of 15, so ECE = mean |correct - confidence| = (0.05 + 0.85 + 0.25 + 0.45) / 4 = 0.4.
    probs = np.array([[0.95, 0.05], [0.85, 0.15], [0.25, 0.75], [0.55, 0.45]])
    labels = np.array([0, 1, 1, 0])
    assert metrics.expected_calibration_error(probs, labels) == pytest.approx(0.4)
    # One bin: |accuracy - mean confidence| = |0.75 - 0.775|.
    assert metrics.expected_calibration_error(probs, labels, n_bins=1) == pytest.approx(0.025)


def test_count_params_and_macs_by_hand() -> None:
    model = _tiny_net(n_classes=4)
    model.train()
    # conv 8*3*3*3 + BN 2*8 + linear 8*4 + 4
    assert utils.count_params(model) == 216 + 16 + 36
    conv_only = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, bias=False))
    conv_macs, _ = utils.count_macs_params(conv_only, torch.zeros(1, 3, 16, 16))
    assert conv_macs == 8 * 3 * 3 * 3 * 16 * 16
    macs, _ = utils.count_macs_params(model, torch.zeros(1, 3, 16, 16))
    assert macs >= 8 * 3 * 3 * 3 * 16 * 16 + 8 * 4
    assert model.training, "count_macs must restore the training flag"


def test_model_size_close_to_four_bytes_per_param() -> None:
    model = nn.Sequential(nn.Conv2d(3, 64, 3), nn.Flatten(), nn.Linear(64, 100))
    params = utils.count_params(model)
    size = utils.model_size_bytes(model)
    assert 4 * params <= size <= 4 * params + 2048


def test_model_size_handles_tied_weights() -> None:
    embed = nn.Linear(16, 16, bias=False)
    model = nn.Sequential(embed, embed)
    assert utils.model_size_bytes(model) < 2 * 4 * 16 * 16


def test_latency_and_throughput_positive() -> None:
    model = _tiny_net()
    model.train()
    timing = cost.measure_latency(model, (3, 32, 32), warmup=1, runs=5)
    assert set(timing) == {"median_ms", "p90_ms", "mean_ms"}
    assert timing["median_ms"] > 0 and timing["p90_ms"] >= timing["median_ms"] * 0.999
    assert cost.measure_throughput(model, (3, 32, 32), batch_size=8, warmup=1, runs=2) > 0
    assert model.training


def test_predict_normalises_and_returns_probabilities() -> None:
    torch.manual_seed(0)
    model = _tiny_net(n_classes=5)
    with torch.no_grad():  # non-trivial BN running stats so eval mode matters
        model[1].running_mean.uniform_(-0.5, 0.5)
        model[1].running_var.uniform_(0.5, 2.0)
    images = torch.randint(0, 256, (10, 3, 32, 32), dtype=torch.uint8)
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    probs = metrics.predict(model, images, mean, std, batch_size=3)
    assert probs.shape == (10, 5)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-6)
    assert model.training, "predict must restore the training flag"

    model.eval()
    manual_input = (images.float() / 255 - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(
        std
    ).view(1, 3, 1, 1)
    with torch.no_grad():
        expected = torch.softmax(model(manual_input), dim=1).numpy()
        unnormalised = torch.softmax(model(images.float() / 255), dim=1).numpy()
    np.testing.assert_allclose(probs, expected, atol=1e-5)
    assert not np.allclose(probs, unnormalised, atol=1e-3)


def test_predict_rejects_float_images() -> None:
    with pytest.raises(ValueError, match="uint8"):
        metrics.predict(_tiny_net(), torch.rand(2, 3, 8, 8), (0.5,) * 3, (0.5,) * 3)


def test_inference_passes_run_channels_last_and_leave_the_model_contiguous(fresh_backbone):
    """predict_logits and extract_features use channels_last inside (about 2x faster on CPU)
    and give the NCHW forward's outputs; the model comes back as it is stored and timed."""
    from ft_pipelines.core.similarity.features import extract_features

    model = fresh_backbone.eval()
    cfg = model.backbone_cfg
    images = torch.randint(0, 256, (6, 3, 64, 64), dtype=torch.uint8)
    with torch.inference_mode():
        expected = model(utils.normalise(images, cfg.mean, cfg.std)).double().numpy()
    logits = metrics.predict_logits(model, images, cfg.mean, cfg.std, batch_size=4)
    probs = extract_features(model, images, batch_size=4, record_bn=False,
                             progress=False).source_probs
    np.testing.assert_allclose(logits, expected, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(probs, torch.softmax(torch.as_tensor(expected), 1).numpy(),
                               atol=1e-5)
    kernels = [p for p in model.parameters() if p.dim() == 4]
    assert all(p.is_contiguous() for p in kernels)
    # and it can still be trained: no parameter became an inference tensor
    assert not any(p.is_inference() for p in model.parameters())
    model.requires_grad_(True)
    model(utils.normalise(images, cfg.mean, cfg.std)).sum().backward()
