"""The training recipe (issue 19): layer-wise learning rates, EMA, augmentation policies and
mixup/cutmix, gradient accumulation, class balance, the LR range test. Each ingredient is checked
against its formula; the default run is checked to stay as it was."""

from __future__ import annotations

import pytest
import torch

from ft_pipelines.core.models import freeze_all_but
from ft_pipelines.core.training import (
    BestModel,
    Callback,
    ModelEma,
    TrainConfig,
    Trainer,
    build_optimizer,
    default_callbacks,
)
from ft_pipelines.core.utils import head_parameter_names
from tests.core.training.tiny import Crash, run, tiny_data, tiny_model

# --------------------------------------------------------------------- layer-wise learning rates


def _rates(model, config) -> dict[str, float]:
    optimizer = build_optimizer(model, config, head_parameter_names(model), set())
    return {id(p): group["base_lr"] for group in optimizer.param_groups for p in group["params"]}


def _rate_of(model, rates, name):
    return rates[id(dict(model.named_parameters())[name])]


def test_layer_decay_on_the_tiny_resnet_layout():
    model = tiny_model("all")
    config = TrainConfig(lr_pretrained=0.01, lr_new=0.1, layer_decay=0.5)
    rates = _rates(model, config)
    assert _rate_of(model, rates, "fc.weight") == 0.1  # the head: lr_new
    # layer4 is next to the head (depth 1) ... layer1 depth 4, the stem depth 5
    expected = {"layer4.0.weight": 0.01, "layer3.0.weight": 0.005, "layer2.1.weight": 0.0025,
                "layer1.0.bias": 0.00125, "conv1.weight": 0.000625, "bn1.weight": 0.000625}
    for name, lr in expected.items():
        assert _rate_of(model, rates, name) == pytest.approx(lr), name
    # without layer_decay: the two rates as before
    plain = _rates(model, TrainConfig(lr_pretrained=0.01, lr_new=0.1))
    assert {_rate_of(model, plain, n) for n in expected} == {0.01}


def test_layer_decay_on_the_bundled_efficientnet_lite(fresh_backbone):
    model = freeze_all_but(fresh_backbone, 3)  # blocks.4-6, the tail and the head train
    rates = _rates(model, TrainConfig(lr_pretrained=0.02, lr_new=0.2, layer_decay=0.7))
    assert _rate_of(model, rates, "classifier.weight") == 0.2
    assert _rate_of(model, rates, "conv_head.weight") == pytest.approx(0.02)  # tail: depth 1
    assert _rate_of(model, rates, "blocks.6.0.conv_pw.weight") == pytest.approx(0.02)
    assert _rate_of(model, rates, "blocks.5.0.conv_pw.weight") == pytest.approx(0.02 * 0.7)
    assert _rate_of(model, rates, "blocks.4.0.conv_pw.weight") == pytest.approx(0.02 * 0.7**2)
    assert "blocks.3.0.conv_pw.weight" not in {  # frozen: in no group
        n for n, p in model.named_parameters() if id(p) in rates}


@pytest.mark.parametrize("value", [0.0, 1.0, 1.5])
def test_layer_decay_outside_0_1_is_refused(value):
    with pytest.raises(ValueError, match="layer_decay"):
        TrainConfig(layer_decay=value)


# ------------------------------------------------------------------------------------------ EMA


def _frozen_bn_no_dropout(model):
    """BN frozen (running statistics fixed) and no dropout: results independent of how a batch
    is split (accumulation, ranks)."""
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.requires_grad_(False)
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
    return model


class Recorder(Callback):
    """The model's state dict at the start and after every optimizer step."""

    def __init__(self) -> None:
        self.states = []

    def _record(self, trainer):
        self.states.append({k: v.detach().clone() for k, v in trainer.model.state_dict().items()})

    def on_train_start(self, trainer):
        self._record(trainer)

    def on_batch_end(self, trainer, epoch, batch, stats):
        self._record(trainer)


@pytest.mark.parametrize("warmup", [False, True])
def test_ema_after_k_steps_equals_the_hand_computed_average(warmup):
    model = tiny_model("all")  # BN trains: its running statistics are averaged too
    config = TrainConfig(epochs=2, batch_size=16, progress=False, ema={"decay": 0.8,
                                                                       "warmup": warmup})
    recorder = Recorder()
    trainer = Trainer(model, config, callbacks=[*default_callbacks(config), recorder])
    trainer.fit(tiny_data(), tiny_data(24, seed=1))
    ema = next(c for c in trainer.callbacks if isinstance(c, ModelEma))
    steps = recorder.states[1:]
    assert len(steps) == 6 == ema.updates  # 48 images / 16, 2 epochs
    for name, value in ema.shadow.items():
        expected = recorder.states[0][name].double()
        for t, state in enumerate(steps):
            decay = min(0.8, (1 + t) / (10 + t)) if warmup else 0.8
            expected = decay * expected + (1 - decay) * state[name].double()
        if value.is_floating_point():
            torch.testing.assert_close(value.double(), expected, rtol=1e-5, atol=1e-6,
                                       msg=name)
        else:  # num_batches_tracked: the model's own
            assert torch.equal(value, steps[-1][name]), name
    assert not torch.allclose(ema.shadow["layer4.0.weight"], steps[-1]["layer4.0.weight"])
    assert "bn1.running_mean" in ema.shadow


def test_ema_weights_are_kept_only_when_better_on_validation(monkeypatch):
    config = TrainConfig(epochs=2, batch_size=16, progress=False, ema={"decay": 0.5})
    plain = Trainer(tiny_model(), config, callbacks=default_callbacks(config))
    history = plain.fit(tiny_data(), tiny_data(24, seed=1))
    assert {"ema_val_acc", "ema_val_loss"} <= set(history)
    ema = next(c for c in plain.callbacks if isinstance(c, ModelEma))
    best = next(c for c in plain.callbacks if isinstance(c, BestModel))
    kept = ema.best if history["ema_kept"].all() else best.state
    assert history["ema_kept"].all() == (ema.best_key > best.best_key)
    for name, value in plain.model.state_dict().items():
        assert torch.equal(value, kept[name]), name

    # an EMA that validates better than any raw epoch is what the model ends with
    monkeypatch.setattr(Trainer, "evaluate_state",
                        lambda self, state: {"val_acc": 2.0, "val_loss": 0.0})
    trainer = Trainer(tiny_model(), config, callbacks=default_callbacks(config))
    assert trainer.fit(tiny_data(), tiny_data(24, seed=1))["ema_kept"].all()
    ema = next(c for c in trainer.callbacks if isinstance(c, ModelEma))
    for name, value in trainer.model.state_dict().items():
        assert torch.equal(value, ema.best[name]), name


def test_ema_resumes_from_a_checkpoint_as_if_never_interrupted(tmp_path):
    config = TrainConfig(epochs=3, batch_size=16, progress=False, ema={"decay": 0.7})
    reference = tiny_model()
    history = run(reference, config)
    trainer = Trainer(tiny_model(), config,
                      callbacks=[*default_callbacks(config, tmp_path / "ckpt"), Crash(1, 1)])
    with pytest.raises(KeyboardInterrupt):
        trainer.fit(tiny_data(), tiny_data(24, seed=1))
    resumed = tiny_model()
    resumed_history = run(resumed, config, checkpoint_dir=tmp_path / "ckpt")
    assert resumed_history["resumed_after_epoch"].iloc[0] == 1
    for (name, a), b in zip(reference.state_dict().items(), resumed.state_dict().values(),
                            strict=True):
        assert torch.equal(a, b), name
    assert resumed_history["ema_val_loss"].tolist() == history["ema_val_loss"].tolist()


@pytest.mark.parametrize("decay", [0.0, 1.0])
def test_ema_decay_outside_0_1_is_refused(decay):
    with pytest.raises(ValueError, match="ema.decay"):
        TrainConfig(ema={"decay": decay})
