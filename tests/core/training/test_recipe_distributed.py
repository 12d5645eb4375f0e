"""The recipe under data parallelism: 2 gloo processes with accumulation (no_sync on all but the
last micro-batch), the class-balanced sampler, class weights, the EMA and the LR range test train
the weights of 1 process with the same settings (frozen BatchNorm, no dropout)."""

import pytest
import torch

from ft_pipelines.core.training import TrainConfig, Trainer, default_callbacks
from ft_pipelines.core.training.distributed import spawn_data_parallel, world
from ft_pipelines.core.utils import head_parameter_names
from tests.conftest import MULTI_PROCESS, SLOW
from tests.core.training.test_distributed import _register_tiny
from tests.core.training.tiny import tiny_data, tiny_model

pytestmark = [MULTI_PROCESS, SLOW]  # spawns ranks: pytest -m slow (.ci/run)


def _train(balance: str):
    """One rank's training (module level: the spawned processes import it)."""
    _register_tiny()
    model = tiny_model(1)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.requires_grad_(False)
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
    config = TrainConfig(epochs=2, batch_size=16, accumulate=2, class_balance=balance,
                         ema={"decay": 0.6}, lr_find=True, lr_pretrained=0.05, lr_new=0.1,
                         schedule="constant", progress=False, device="cpu", precision="fp32")
    trainer = Trainer(model, config, callbacks=default_callbacks(config),
                      new_param_names=head_parameter_names(model))
    data = tiny_data(45)
    keep = (data.labels != 2) | (torch.arange(45) < 9)  # class 2: 3 images, the others 15
    train = type(data)(data.images[keep], data.labels[keep])
    history = trainer.fit(train, tiny_data(20, seed=1))
    return model.state_dict(), history, world()


@pytest.mark.parametrize("balance", ["weights", "sampler"])
def test_two_processes_with_the_recipe_equal_one_process(balance):
    single, single_history, _ = _train(balance)
    double, double_history, ranks = spawn_data_parallel(_train, (balance,), 2, "cpu")
    assert ranks == (0, 2)
    assert double_history["lr_found"].tolist() == single_history["lr_found"].tolist()
    assert double_history["ema_kept"].tolist() == single_history["ema_kept"].tolist()
    for name, value in single.items():
        torch.testing.assert_close(double[name], value, rtol=1e-4, atol=1e-5, msg=name)
    for column in ("train_loss", "val_loss", "ema_val_loss"):
        torch.testing.assert_close(torch.tensor(double_history[column].to_numpy()),
                                   torch.tensor(single_history[column].to_numpy()),
                                   rtol=1e-4, atol=1e-5)
