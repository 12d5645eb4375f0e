"""The training loop: resume equals an uninterrupted run, caches change nothing, bad input fails
clearly, and a model learns a real class signal. A tiny CNN (tests/core/training/tiny.py) keeps
this fast."""

import copy

import pytest
import torch

from ft_pipelines.core.regularizers import Regularizer
from ft_pipelines.core.training import TrainConfig, Trainer, default_callbacks, frozen_prefix_length
from ft_pipelines.core.training.checkpoint import load_checkpoint
from ft_pipelines.core.training.optim import lr_factor
from tests.core.training.tiny import Crash, run, tiny_data, tiny_model


def test_resume_after_kill_gives_the_same_weights(tmp_path):
    config = TrainConfig(epochs=3, batch_size=16, lr_pretrained=0.05, lr_new=0.1, progress=False,
                         augment={"random_resized_crop": {"scale": [0.6, 1.0]},
                                  "horizontal_flip": True})
    reference = tiny_model()
    history = run(reference, config)

    interrupted = tiny_model()
    trainer = Trainer(interrupted, config,
                      callbacks=[*default_callbacks(config, tmp_path / "ckpt"), Crash(1, 1)])
    with pytest.raises(KeyboardInterrupt):
        trainer.fit(tiny_data(), tiny_data(24, seed=1))
    resumed = tiny_model()  # a fresh process would rebuild the model from its inputs
    resumed_history = run(resumed, config, checkpoint_dir=tmp_path / "ckpt")
    assert len(resumed_history) == 3
    for (name, a), b in zip(reference.state_dict().items(), resumed.state_dict().values(),
                            strict=True):
        assert torch.equal(a, b), name
    assert resumed_history["val_acc"].tolist() == history["val_acc"].tolist()


def test_frozen_prefix_cache_gives_identical_results():
    config = TrainConfig(epochs=2, batch_size=16, progress=False)
    cached, uncached = tiny_model(trainable_blocks=2), tiny_model(trainable_blocks=2)
    assert frozen_prefix_length(cached) == 6  # conv1, bn1, relu, maxpool, layer1, layer2
    h_cached = run(cached, config)
    h_plain = run(uncached, TrainConfig(epochs=2, batch_size=16, progress=False, use_cache=False))
    for a, b in zip(cached.state_dict().values(), uncached.state_dict().values(), strict=True):
        assert torch.allclose(a, b, atol=1e-5)
    assert h_cached["val_loss"].tolist() == pytest.approx(h_plain["val_loss"].tolist(), abs=1e-5)


def test_frozen_layers_and_their_bn_statistics_do_not_move():
    model = tiny_model(trainable_blocks=1)
    before = copy.deepcopy(model.state_dict())
    run(model, TrainConfig(epochs=1, batch_size=16, progress=False, use_cache=False))
    after = model.state_dict()
    assert torch.equal(before["layer1.1.running_mean"], after["layer1.1.running_mean"])
    assert torch.equal(before["conv1.weight"], after["conv1.weight"])
    assert not torch.equal(before["layer4.0.weight"], after["layer4.0.weight"])


def test_best_epoch_is_selected_on_validation():
    model = tiny_model()
    history = run(model, TrainConfig(epochs=3, batch_size=16, progress=False))
    assert len(history) == 3
    assert {"train_loss", "val_acc", "reg_term", "lr", "seconds", "images_per_s"} <= set(history)


@pytest.mark.parametrize("field", ["lr_pretrained", "lr_new"])
@pytest.mark.parametrize("value", [0.0, -0.1])
def test_non_positive_learning_rate_is_refused(field, value):
    with pytest.raises(ValueError, match=field):
        TrainConfig(**{field: value})


def test_nan_loss_names_epoch_and_batch_and_keeps_last_checkpoint(tmp_path):
    class Explode(Regularizer):
        name, needs_inputs = "explode", False

        def __init__(self):
            self.calls = 0

        def attach(self, model): ...
        def detach(self): ...
        def decay_exempt(self):
            return set()

        def penalty(self, model, inputs):
            self.calls += 1
            return torch.tensor(float("nan") if self.calls > 4 else 0.0)

    config = TrainConfig(epochs=3, batch_size=16, progress=False)
    trainer = Trainer(tiny_model(), config, Explode(), default_callbacks(config, tmp_path))
    with pytest.raises(FloatingPointError, match="epoch 2, batch 2"):
        trainer.fit(tiny_data(), tiny_data(24, seed=1))
    _, meta = load_checkpoint(tmp_path)  # epoch 1's checkpoint is still there
    assert meta["epoch"] == 1


def test_warmup_then_cosine_schedule():
    config = TrainConfig(epochs=2, warmup_epochs=0.5, progress=False)
    factors = [lr_factor(config, step, 10) for step in range(20)]
    assert factors[0] == pytest.approx(0.2) and factors[4] == pytest.approx(1.0)
    decaying = factors[5:]
    assert factors[-1] < 0.05 and all(a >= b for a, b in zip(decaying, decaying[1:], strict=False))
