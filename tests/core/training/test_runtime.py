"""runtime.device / runtime.precision: resolution, clear errors, bf16 autocast on CPU trains."""

import pytest
import torch

from ft_pipelines.core.training import TrainConfig, Trainer
from ft_pipelines.core.utils import resolve_runtime
from tests.core.training.tiny import tiny_data, tiny_model


def test_auto_is_fp32_on_cpu():
    runtime = resolve_runtime({"device": "cpu", "precision": "auto"})
    assert (runtime.device.type, runtime.precision) == ("cpu", "fp32")
    assert not runtime.grad_scaler().is_enabled()


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
@pytest.mark.parametrize("device", ["cuda", "cuda:0"])
def test_cuda_without_cuda_names_the_parameter(device):
    with pytest.raises(ValueError, match="runtime.device"):
        resolve_runtime({"device": device})


def test_fp16_on_cpu_is_refused_clearly():
    with pytest.raises(ValueError, match="runtime.precision=fp16 needs a CUDA device"):
        resolve_runtime({"device": "cpu", "precision": "fp16"})


def test_bf16_autocast_on_cpu_trains():
    model = tiny_model(1)
    before = model.fc.weight.detach().clone()
    config = TrainConfig(epochs=1, batch_size=16, progress=False, device="cpu", precision="bf16")
    trainer = Trainer(model, config)
    history = trainer.fit(tiny_data(32), tiny_data(16, seed=1))
    assert trainer.runtime.precision == "bf16"
    assert model.fc.weight.dtype == torch.float32  # autocast: weights stay fp32
    assert not torch.equal(model.fc.weight, before)
    assert history["train_loss"].notna().all()
