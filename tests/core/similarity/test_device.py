"""Every similarity loop runs where ``runtime.device`` says: the setting reaches the forward
passes (cpu: same features, the model back where it was; cuda on a machine without one: the
runtime's clear error), from the similarity report, the backbone ranking and the linear probe."""

from __future__ import annotations

import pytest
import torch

from ft_pipelines.core.data import ImageData
from ft_pipelines.core.evaluation.baselines import linear_probe_model
from ft_pipelines.core.similarity import extract_features, score_backbone, similarity_report

NO_CUDA = pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error without CUDA")


@pytest.fixture(scope="module")
def data():
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (12, 3, 32, 32), generator=generator, dtype=torch.uint8)
    return ImageData(images, torch.arange(12) % 3)


def test_cpu_gives_the_features_of_the_model_where_it_is(bundled_backbone, data):
    here = extract_features(bundled_backbone, data.images, progress=False)
    on_cpu = extract_features(bundled_backbone, data.images, progress=False, device="cpu")
    assert (on_cpu.penultimate == here.penultimate).all()
    assert on_cpu.bn_stats.keys() == here.bn_stats.keys()
    assert next(bundled_backbone.parameters()).device.type == "cpu"


@NO_CUDA
@pytest.mark.parametrize("loop", ["report", "ranking", "probe"])
def test_cuda_without_a_gpu_stops_every_loop_with_the_runtime_error(bundled_backbone, data,
                                                                    loop):
    run = {"report": lambda: similarity_report(bundled_backbone, data, {}, "cuda"),
           "ranking": lambda: score_backbone(bundled_backbone, data, device="cuda"),
           "probe": lambda: linear_probe_model(bundled_backbone, data, 3, device="cuda")}[loop]
    with pytest.raises(ValueError, match=r"runtime.device='cuda'.*set runtime.device: cpu"):
        run()
    assert next(bundled_backbone.parameters()).device.type == "cpu"
