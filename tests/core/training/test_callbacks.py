"""The model learns a real class signal; BestModel returns the best epoch's weights, not the
last; EarlyStopping stops at the right epoch. Each test fails if its callback is disabled."""

from __future__ import annotations

import pytest
import torch

from ft_pipelines.core.training import Callback, TrainConfig, Trainer
from ft_pipelines.core.training.callbacks import BestModel, EarlyStopping
from tests.core.training.tiny import run, tiny_data, tiny_model


def _config(**overrides) -> TrainConfig:
    settings = {"epochs": 3, "batch_size": 16, "lr_pretrained": 0.1, "lr_new": 0.1,
                "warmup_epochs": 0.0, "progress": False}
    return TrainConfig(**{**settings, **overrides})


@torch.inference_mode()
def _accuracy(model, data) -> float:
    from ft_pipelines.core.utils import normalise

    model.eval()
    cfg = model.backbone_cfg
    logits = model(normalise(data.images, cfg.mean, cfg.std))
    return float((logits.argmax(1) == data.labels).float().mean())


def test_the_model_learns_the_class_signal_and_not_noise():
    learned = tiny_model()
    history = run(learned, _config())
    assert history["val_acc"].iloc[-1] >= 0.9
    assert _accuracy(learned, tiny_data(60, seed=7)) >= 0.9  # unseen images, same signal
    assert history["train_loss"].iloc[-1] < history["train_loss"].iloc[0]
    # the same training on labels unrelated to the pixels stays near chance (1/3) on new images
    noise = tiny_model()
    run(noise, _config(), signal=False)
    assert _accuracy(noise, tiny_data(60, seed=7, signal=False)) <= 0.6


class RecordWeights(Callback):
    """Keeps a copy of the weights at the end of every epoch."""

    def __init__(self) -> None:
        self.weights: list[dict[str, torch.Tensor]] = []

    def on_epoch_end(self, trainer, epoch, row):
        self.weights.append({k: v.clone() for k, v in trainer.model.state_dict().items()})


class SabotageLastEpoch(Callback):
    """Scrambles the weights before the last epoch, so the last epoch is not the best one."""

    def on_epoch_start(self, trainer, epoch):
        if epoch == trainer.config.epochs - 1:
            with torch.no_grad():
                for parameter in trainer.model.parameters():
                    parameter.mul_(-3.0)


def test_best_model_restores_the_best_epoch_not_the_last():
    model, recorder = tiny_model(), RecordWeights()
    trainer = Trainer(model, _config(), callbacks=[SabotageLastEpoch(), BestModel(), recorder])
    history = trainer.fit(tiny_data(), tiny_data(24, seed=1))
    keys = list(zip(history["val_acc"], -history["val_loss"], strict=True))
    best = max(range(len(keys)), key=keys.__getitem__)
    assert best != len(history) - 1, "precondition: the sabotaged last epoch must be worse"
    final = model.state_dict()
    for name, tensor in recorder.weights[best].items():
        assert torch.equal(final[name], tensor), name
    assert _accuracy(model, tiny_data(24, seed=1)) == pytest.approx(history["val_acc"][best])


class FakeTrainer:
    stop = False


@pytest.mark.parametrize(("accuracies", "patience", "stops_after"), [
    ([0.5, 0.6, 0.6, 0.55, 0.7], 2, 4),   # no gain in epochs 3 and 4
    ([0.5, 0.6, 0.6, 0.7, 0.7, 0.7], 2, 6),  # epoch 4 improved, so the count restarts
    ([0.5, 0.4], 1, 2),
    ([0.5, 0.6, 0.7], 1, None),
])
def test_early_stopping_stops_after_patience_epochs_without_gain(accuracies, patience,
                                                                 stops_after):
    callback, trainer = EarlyStopping(patience), FakeTrainer()
    stopped = None
    for epoch, accuracy in enumerate(accuracies):
        callback.on_epoch_end(trainer, epoch, {"val_acc": accuracy})
        if trainer.stop and stopped is None:
            stopped = epoch + 1
    assert stopped == stops_after


def test_early_stopping_ends_training_in_the_trainer():
    # a learning rate too small to change any prediction: validation accuracy never improves
    # after epoch 1, so patience 2 ends training after epoch 3 of 6
    history = run(tiny_model(), _config(epochs=6, patience=2, lr_pretrained=1e-9, lr_new=1e-9))
    assert history["epoch"].tolist() == [1, 2, 3]
