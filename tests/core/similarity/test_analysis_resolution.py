"""The similarity verdict does not depend on the training resolution (issue 14, point 3)."""

from __future__ import annotations

import pytest
import torch

from ft_pipelines.core.data import ImageData, build_images_table, decode_images, load_records
from ft_pipelines.core.similarity import similarity_report
from ft_pipelines.core.similarity.resolution import resize_images
from ft_pipelines.core.strategy.decision_matrix import classify_similarity

# its module-scoped fixture is built once: all its tests in one xdist worker
pytestmark = pytest.mark.xdist_group("analysis_resolution")

MAX_DIVERGENCE = 1.0  # strategy.similarity.max_divergence default
# divergence with 40 images: digits 1.49-1.50, LFW 0.70-0.71 (60 images: 1.51-1.52, 0.68-0.69)
IMAGES = 40


@pytest.fixture(scope="module")
def demo_tables():
    tables = {}
    for source in ("sklearn_digits", "lfw_faces"):
        table, _, _ = build_images_table(load_records(source),
                                         {"train": 1.0, "val": 0.0, "test": 0.0}, 0)
        tables[source] = table.sample(n=IMAGES, random_state=0)
    return tables


def test_resize_images_keeps_uint8_and_size():
    images = torch.randint(0, 256, (2, 3, 64, 64), dtype=torch.uint8)
    assert resize_images(images, 64) is images
    resized = resize_images(images, 96)
    assert resized.dtype == torch.uint8 and resized.shape == (2, 3, 96, 96)


@pytest.mark.parametrize("input_size", [64, 96, 224])  # below, at and above analysis_size
def test_verdict_is_the_same_at_every_training_resolution(bundled_backbone, demo_tables,
                                                          input_size):
    torch.set_num_threads(1)
    verdicts, values = {}, {}
    for source, table in demo_tables.items():
        images, labels = decode_images(table, input_size, progress=False)
        metrics, _ = similarity_report(bundled_backbone, ImageData(images, labels),
                                       {"analysis_size": 96, "batch_size": 64})
        assert metrics["analysis_size"] == 96
        values[source] = metrics["bn_divergence"]
        verdicts[source] = classify_similarity(metrics, MAX_DIVERGENCE)["class"]
    assert verdicts == {"sklearn_digits": "dissimilar", "lfw_faces": "similar"}, values


def test_without_analysis_size_the_verdict_flips_at_64px(bundled_backbone, demo_tables):
    """The reason for the fixed size: measured at 64 px, LFW faces look dissimilar."""
    torch.set_num_threads(1)
    images, labels = decode_images(demo_tables["lfw_faces"], 64, progress=False)
    metrics, _ = similarity_report(bundled_backbone, ImageData(images, labels),
                                   {"analysis_size": None, "batch_size": 64})
    assert metrics["analysis_size"] == 64
    assert classify_similarity(metrics, MAX_DIVERGENCE)["class"] == "dissimilar"
