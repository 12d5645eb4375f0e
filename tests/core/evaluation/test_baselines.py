"""The cheap alternatives: the linear probe as a deployable network, classical pixel classifiers."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from ft_pipelines.core.data import ImageData
from ft_pipelines.core.evaluation import pixel_baselines
from ft_pipelines.core.evaluation.baselines import _folded_linear, grey_pixels, linear_probe_model
from ft_pipelines.core.utils import count_params


@pytest.mark.parametrize(("labels", "num_classes"), [
    (np.arange(60) % 4, 4),           # multinomial
    (np.arange(60) % 2, 2),           # binary: one decision value
    (np.arange(60) % 3 * 2, 6),       # classes 1, 3, 5 absent from training
])
def test_folded_head_reproduces_the_sklearn_probabilities(labels, num_classes) -> None:
    rng = np.random.default_rng(0)
    features = rng.normal(size=(60, 7)) * rng.uniform(0.5, 5, size=7) + rng.normal(size=7)
    features[np.arange(60), labels % 7] += 2.0
    probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=500, C=0.1))
    probe.fit(features, labels)
    expected = np.zeros((60, num_classes))
    expected[:, probe.classes_] = probe.predict_proba(features)
    linear = _folded_linear(probe, num_classes)
    with torch.no_grad():
        got = torch.softmax(linear(torch.tensor(features, dtype=torch.float32)), 1).numpy()
    np.testing.assert_allclose(got, expected, atol=1e-5)


def tiny_data(n: int, seed: int, size: int = 32) -> ImageData:
    generator = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % 3
    images = torch.randint(0, 128, (n, 3, size, size), generator=generator, dtype=torch.uint8)
    for k in range(3):  # class k: a bright horizontal band at its own height
        images[labels == k, :, 10 * k:10 * k + 6] += 120
    return ImageData(images, labels)


def test_linear_probe_counts_the_headless_backbone_plus_its_head(bundled_backbone) -> None:
    probe = linear_probe_model(bundled_backbone, tiny_data(24, 0, 64), num_classes=3,
                               max_iter=200)
    features = bundled_backbone.classifier.in_features
    head_1000 = features * 1000 + 1000
    assert count_params(probe) == count_params(bundled_backbone) - head_1000 + features * 3 + 3
    assert probe(torch.randn(2, 3, 64, 64)).shape == (2, 3)
    assert bundled_backbone.classifier.out_features == 1000  # the pretrained model untouched


def test_grey_pixels_downsamples_to_the_asked_size() -> None:
    images = torch.full((2, 3, 32, 32), 255, dtype=torch.uint8)
    pixels = grey_pixels(images, 16)
    assert pixels.shape == (2, 256) and np.allclose(pixels, 1.0)


def test_pixel_baselines_learn_and_report_cost() -> None:
    names = ["top", "middle", "bottom"]
    rows = pixel_baselines(tiny_data(45, 0), tiny_data(30, 1), names,
                           {"pixel_size": 8, "latency_runs": 3, "latency_warmup": 1,
                            "throughput_batch": 8})
    assert set(rows) == {"pixels_logreg", "pixels_svc"}
    for row in rows.values():
        assert row["top1"] >= 0.9  # the bands are easy
        assert 0 <= row["ece"] <= 1 and row["top5"] is None  # 3 classes: no top-5
        assert row["params"] > 0 and row["size_bytes"] >= 4 * 64 and row["macs"] > 0
        assert row["latency_ms"] > 0 and row["throughput"] > 0 and row["throughput_batch"] == 8
    assert rows["pixels_logreg"]["macs"] == 3 * 64


@pytest.mark.parametrize(("per_class", "note"), [(3, "3 folds"), (1, "softmax")])
def test_pixel_svc_adapts_to_classes_with_few_training_images(per_class, note) -> None:
    """3 classes x 8 images crashed evaluation: n_splits=5 > members in each class."""
    rows = pixel_baselines(tiny_data(3 * per_class, 0), tiny_data(12, 1), ["a", "b", "c"],
                           {"pixel_size": 8, "latency_runs": 2, "latency_warmup": 1,
                            "throughput_batch": 4})
    svc = rows["pixels_svc"]
    assert note in svc["note"] and "note" not in rows["pixels_logreg"]
    assert 0 <= svc["top1"] <= 1 and 0 <= svc["ece"] <= 1
