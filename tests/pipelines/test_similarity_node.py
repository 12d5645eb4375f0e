"""The similarity node hands ``runtime.device`` to its forward passes (cuda on a machine without
one stops with the runtime's error) and decodes only its sample of the training split."""

from __future__ import annotations

import pytest
import torch

from ft_pipelines.core.data import build_images_table, image_data, load_records
from ft_pipelines.params import RuntimeParams, SimilarityParams
from ft_pipelines.pipelines.similarity_analysis.nodes import analyse_similarity


@pytest.fixture(scope="module")
def table():
    records = load_records("sklearn_digits")[:90]
    return build_images_table(records, {"train": 0.6, "val": 0.2, "test": 0.2}, 0)[0]


def test_the_node_runs_on_runtime_device_and_decodes_only_its_sample(bundled_backbone, table,
                                                                      monkeypatch):
    decoded, real = [], image_data.decode_images
    monkeypatch.setattr(image_data, "decode_images",
                        lambda rows, size, *a, **k: decoded.append(len(rows)) or real(rows, size))
    similarity = SimilarityParams(max_images=20, analysis_size=32, batch_size=16)
    metrics, layers, _ = analyse_similarity(bundled_backbone, table, similarity, None,
                                            RuntimeParams(device="cpu"))
    assert metrics["images_used"] == decoded[0] < (table["split"] == "train").sum()
    assert len(layers) > 0
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match=r"runtime.device='cuda'"):
            analyse_similarity(bundled_backbone, table, similarity, None,
                               RuntimeParams(device="cuda"))
