"""The training recipe (issue 19): layer-wise learning rates, EMA, augmentation policies and
mixup/cutmix, gradient accumulation, class balance, the LR range test. Each ingredient is checked
against its formula; the default run is checked to stay as it was."""

from __future__ import annotations

import pytest
import torch

from ft_pipelines.core.data import ImageData
from ft_pipelines.core.models import freeze_all_but
from ft_pipelines.core.training import Callback, TrainConfig, Trainer, default_callbacks
from ft_pipelines.core.training.augment import (
    build_augmentation,
    cutmix_batch,
    mixup_batch,
    one_hot_targets,
    summed_loss,
)
from ft_pipelines.core.training.balance import (
    IMBALANCE_RATIO,
    balanced_order,
    class_weights,
    resolve_class_balance,
)
from ft_pipelines.core.training.callbacks import BestModel
from ft_pipelines.core.training.ema import ModelEma
from ft_pipelines.core.training.finetune import train_config
from ft_pipelines.core.training.lr_find import lr_find_figure, lr_range_test
from ft_pipelines.core.training.optim import build_optimizer
from ft_pipelines.core.utils import head_parameter_names
from ft_pipelines.params import FinetuneParams
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


# ----------------------------------------------------------------- augmentation, mixup, cutmix


def _hand_loss(logits, y, smoothing):
    return torch.nn.functional.cross_entropy(logits, y, reduction="sum",
                                             label_smoothing=smoothing)


@pytest.mark.parametrize("mix", [mixup_batch, cutmix_batch])
@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_mixup_and_cutmix_targets_sum_to_one_and_the_loss_matches_the_formula(mix, smoothing):
    generator = torch.Generator().manual_seed(3)
    x = torch.randn(8, 3, 16, 16, generator=generator)
    y = torch.tensor([0, 1, 2, 3, 4, 0, 1, 2])
    permutation = torch.randperm(8, generator=generator)
    mixed, targets = mix(x, y, permutation, 0.7, 5, smoothing)
    torch.testing.assert_close(targets.sum(1), torch.ones(8))
    if mix is mixup_batch:
        lam = 0.7
        torch.testing.assert_close(mixed, 0.7 * x + 0.3 * x[permutation])
    else:  # lam = the fraction of pixels kept from x
        from_other = (mixed != x).any(1) & (x != x[permutation]).any(1)
        lam = 1.0 - from_other[0].float().mean().item()
        assert 0.0 < lam < 1.0
        assert torch.equal(mixed[:, :, ~from_other[0]], x[:, :, ~from_other[0]])
    logits = torch.randn(8, 5, generator=generator)
    expected = (lam * _hand_loss(logits, y, smoothing)
                + (1 - lam) * _hand_loss(logits, y[permutation], smoothing))
    torch.testing.assert_close(summed_loss(logits, targets, None, smoothing), expected)


def test_class_weighted_soft_loss_matches_the_hard_loss_on_one_hot_targets():
    logits, y = torch.randn(6, 3), torch.tensor([0, 0, 0, 1, 1, 2])
    weights = class_weights(y, 3)
    hard = summed_loss(logits, y, weights, 0.1)
    soft = summed_loss(logits, one_hot_targets(y, 3, 0.1), weights, 0.1)
    torch.testing.assert_close(soft, hard)


@pytest.mark.parametrize("policy", ["trivial", "randaugment", "autoaugment"])
def test_augmentation_policies_keep_uint8_images_and_change_them(policy):
    augmentation = build_augmentation({"policy": policy, "random_erasing": 1.0}, 32)
    images = tiny_data(8).images
    torch.manual_seed(0)
    out = augmentation.pixels(images)
    assert out.dtype == torch.uint8 and out.shape == images.shape
    assert not torch.equal(out, images)
    erased = augmentation.erasing(torch.ones(8, 3, 32, 32))
    assert (erased == 0).any() and (erased == 1).any()  # a box per image, value 0 (the mean)


def test_nothing_on_builds_no_augmentation():
    assert build_augmentation({}, 32) is None


def test_training_with_a_policy_and_mixup_turns_the_cache_off_and_says_why(caplog):
    config = TrainConfig(epochs=2, batch_size=16, progress=False, label_smoothing=0.1,
                         augment={"policy": "trivial", "random_erasing": 0.25, "mixup": 0.4,
                                  "cutmix": 1.0})
    with caplog.at_level("INFO"):
        history = run(tiny_model(2), config)
    assert "Frozen-prefix cache off: the augmentation (policy=trivial, random_erasing=0.25, " \
           "mixup=0.4, cutmix=1.0) changes the inputs every epoch" in caplog.text
    assert history["train_loss"].notna().all() and len(history) == 2


def test_train_config_carries_the_validated_recipe():
    plan = {"epochs": 1, "learning_rates": {"pretrained": 0.01, "new": 0.1}}
    config = train_config(plan, FinetuneParams(augment={"policy": "none", "mixup": 0.0,
                                                        "cutmix": 0.5}))
    assert build_augmentation(config.augment, 32).description == "cutmix=0.5"  # only what's on
    assert (config.epochs, config.lr_pretrained, config.lr_new) == (1, 0.01, 0.1)  # the plan's
    assert train_config(plan, FinetuneParams(epochs=3, lr_new=0.2)).model_dump(
        include={"epochs", "lr_new"}) == {"epochs": 3, "lr_new": 0.2}  # the user's overrides
    assert FinetuneParams().augment.policy == "none"
    # every ingredient from the validated parameters reaches the TrainConfig
    params = FinetuneParams(layer_decay=0.7, ema={"decay": 0.9}, accumulate=4,
                            class_balance="auto", lr_find=True,
                            augment={"policy": "randaugment", "mixup": 0.2})
    config = train_config(plan, params)
    assert (config.layer_decay, config.ema.model_dump(), config.accumulate,
            config.class_balance, config.lr_find) == (0.7, {"decay": 0.9, "warmup": False}, 4,
                                                      "auto", True)
    assert (config.augment.policy, config.augment.mixup) == ("randaugment", 0.2)
    assert any(isinstance(c, ModelEma) for c in default_callbacks(config))


# -------------------------------------------------------------------- gradient accumulation


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_accumulating_4_batches_of_16_equals_one_batch_of_64(smoothing):
    def train(accumulate):
        model = _frozen_bn_no_dropout(tiny_model(2))
        config = TrainConfig(epochs=2, batch_size=64, accumulate=accumulate, progress=False,
                             lr_pretrained=0.05, lr_new=0.1, label_smoothing=smoothing)
        history = Trainer(model, config).fit(tiny_data(128), tiny_data(24, seed=1))
        return model.state_dict(), history

    whole, whole_history = train(1)
    parts, parts_history = train(4)
    for name, value in whole.items():
        torch.testing.assert_close(parts[name], value, rtol=0, atol=1e-5, msg=name)
    assert not torch.equal(whole["layer4.0.weight"], tiny_model(2).state_dict()["layer4.0.weight"])
    torch.testing.assert_close(torch.tensor(parts_history["train_loss"].to_numpy()),
                               torch.tensor(whole_history["train_loss"].to_numpy()))


def test_accumulate_larger_than_the_batch_is_refused():
    with pytest.raises(ValueError, match="accumulate"):
        TrainConfig(batch_size=8, accumulate=16)
    with pytest.raises(ValueError, match="accumulate"):
        FinetuneParams(batch_size=8, accumulate=16)


# --------------------------------------------------------------------------- class balance


def test_balanced_sampler_class_frequencies_converge_to_uniform():
    labels = torch.cat([torch.full((200,), 0), torch.full((20,), 1), torch.full((60,), 2)])
    draws = torch.cat([balanced_order(labels, torch.Generator().manual_seed(epoch))
                       for epoch in range(50)])
    frequencies = torch.bincount(labels[draws], minlength=3).double() / len(draws)
    torch.testing.assert_close(frequencies, torch.full((3,), 1 / 3, dtype=torch.float64),
                               atol=0.01, rtol=0)
    plain = torch.bincount(labels, minlength=3).double() / len(labels)
    assert plain.max() > 0.7  # what plain shuffling would have seen
    # deterministic per (seed, epoch): the same generator state, the same order on every rank
    assert torch.equal(balanced_order(labels, torch.Generator().manual_seed(7)),
                       balanced_order(labels, torch.Generator().manual_seed(7)))


def test_class_weights_are_inverse_frequency_and_auto_turns_on_above_the_ratio():
    labels = torch.tensor([0] * 10 + [1] * 2 + [2] * 3)
    torch.testing.assert_close(class_weights(labels, 4),
                               torch.tensor([15 / 30, 15 / 6, 15 / 9, 1.0]))
    assert resolve_class_balance("auto", labels, 3)[0] == "weights"  # 10 / 2 > 3
    balanced = torch.tensor([0] * 3 + [1] * 3 + [2] * 1)  # 3 / 1 is not above 3
    mode, why = resolve_class_balance("auto", balanced, 3)
    assert mode == "none" and f"<= {IMBALANCE_RATIO:g}" in why
    assert resolve_class_balance("sampler", balanced, 3)[0] == "sampler"


@pytest.mark.parametrize("mode", ["weights", "sampler"])
def test_training_with_class_balance_records_it(mode, caplog):
    data = tiny_data(48)
    keep = (data.labels != 2) | (torch.arange(48) < 12)  # class 2: 4 images, others 16
    train = ImageData(data.images[keep], data.labels[keep])
    config = TrainConfig(epochs=1, batch_size=16, progress=False, class_balance="auto"
                         if mode == "weights" else mode)
    trainer = Trainer(tiny_model(), config)
    with caplog.at_level("INFO"):
        history = trainer.fit(train, tiny_data(24, seed=1))
    assert history["class_balance"].tolist() == [mode]
    assert "largest/smallest class ratio 4.00" in caplog.text
    if mode == "weights":
        torch.testing.assert_close(trainer.class_weights, class_weights(train.labels, 3))


def test_the_default_run_has_no_recipe_columns():
    history = run(tiny_model(), TrainConfig(epochs=1, batch_size=16, progress=False))
    assert not {"class_balance", "lr_found", "ema_kept", "ema_val_acc"} & set(history)


# ---------------------------------------------------------------------------- LR range test


def test_lr_range_test_picks_a_rate_in_the_stable_range_of_linear_regression():
    # least squares with Hessian 2 X^T X / n: gradient descent is stable for lr < 2 / lambda_max
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(256, 5, generator=generator) * torch.tensor([3.0, 1.0, 1.0, 0.5, 0.2])
    target = x @ torch.randn(5, generator=generator) + 0.1 * torch.randn(256, generator=generator)
    hessian = 2 * x.T @ x / len(x)
    stable = 2 / torch.linalg.eigvalsh(hessian).max().item()
    w = torch.zeros(5)

    def step(i, lr):
        nonlocal w
        batch = torch.arange(i * 32, i * 32 + 32) % len(x)
        residual = x[batch] @ w - target[batch]
        w = w - lr * 2 * x[batch].T @ residual / len(batch)
        return float((residual**2).mean())

    found = lr_range_test(step)
    assert stable / 100 < found.suggestion < stable
    assert found.lr_min < 10 * stable  # it stopped where the loss blew up, not at the end
    assert len(found.lrs) < 100


def test_lr_find_restores_the_model_and_trains_with_the_rate_it_found():
    config = TrainConfig(epochs=1, batch_size=16, lr_pretrained=0.01, lr_new=0.1,
                         progress=False, lr_find=True)
    model = tiny_model(2)
    trainer = Trainer(model, config, callbacks=default_callbacks(config),
                      new_param_names=head_parameter_names(model))
    history = trainer.fit(tiny_data(), tiny_data(24, seed=1))
    found = history["lr_found"].iloc[0]
    assert found == trainer.lr_finding.suggestion and 1e-6 < found < 1
    lr_find_figure(trainer.lr_finding)  # the curve as a figure
    # the same training with the found rates set by hand: the test left no trace
    scale = found / 0.1
    again = tiny_model(2)
    Trainer(again, TrainConfig(epochs=1, batch_size=16, lr_pretrained=0.01 * scale,
                               lr_new=0.1 * scale, progress=False),
            callbacks=default_callbacks(config),
            new_param_names=head_parameter_names(again)).fit(tiny_data(), tiny_data(24, seed=1))
    for name, value in again.state_dict().items():
        torch.testing.assert_close(model.state_dict()[name], value, msg=name)


def test_a_resumed_run_keeps_the_rates_its_lr_range_test_found(tmp_path):
    config = TrainConfig(epochs=2, batch_size=16, progress=False, lr_find=True,
                         accumulate=2, class_balance="sampler", ema={"decay": 0.5})
    reference = tiny_model(2)
    history = run(reference, config)
    trainer = Trainer(tiny_model(2), config,
                      callbacks=[*default_callbacks(config, tmp_path / "ckpt"), Crash(1, 1)])
    with pytest.raises(KeyboardInterrupt):
        trainer.fit(tiny_data(), tiny_data(24, seed=1))
    resumed = Trainer(tiny_model(2), config, callbacks=default_callbacks(config, tmp_path / "ckpt"))
    resumed_history = resumed.fit(tiny_data(), tiny_data(24, seed=1))
    assert resumed.start_epoch == 1 and resumed.lr_finding is None  # no second range test
    assert resumed_history["lr_found"].tolist() == history["lr_found"].tolist()
    for (name, a), b in zip(reference.state_dict().items(),
                            resumed.model.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
