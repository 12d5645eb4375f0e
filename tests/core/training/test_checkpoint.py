"""Checkpoints: one atomic file per epoch, so a run killed at any instant of a save resumes from
the previous complete epoch (or starts over), never from a mix; an unusable file is set aside
with a warning, never loaded half; every callback's state, the stop flag included, comes back."""

from __future__ import annotations

import logging
import os

import pytest
import torch

from ft_pipelines.core.training import (
    TrainConfig,
    Trainer,
    default_callbacks,
    take_finished_checkpoints,
)
from ft_pipelines.core.training.checkpoint import (
    CHECKPOINT_FILE,
    CHECKPOINT_FORMAT,
    load_checkpoint,
)
from tests.core.training.tiny import Crash, run, tiny_data, tiny_model

# its module-scoped fixture is built once: all its tests in one xdist worker
pytestmark = pytest.mark.xdist_group("training_checkpoint")

CONFIG = TrainConfig(epochs=3, batch_size=16, lr_pretrained=0.05, lr_new=0.1, progress=False)


def _assert_same_weights(a, b) -> None:
    for (name, x), y in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(x, y), name


@pytest.fixture(scope="module")
def reference():
    """The uninterrupted run (module scope: the same for every kill point)."""
    from tests.core.training.tiny import register_tiny_layout

    with pytest.MonkeyPatch.context() as monkeypatch:
        register_tiny_layout(monkeypatch)
        model = tiny_model()
        history = run(model, CONFIG)
    return model, history


class Killed(BaseException):
    pass


@pytest.mark.parametrize("kill_at", range(1, 7))
def test_a_kill_at_any_rename_of_a_save_resumes_cleanly(kill_at, tmp_path, monkeypatch,
                                                        reference):
    """The k-th file rename of the run raises (the process dies there); resuming must give the
    uninterrupted run's weights. With two files per checkpoint (weights, then metadata), a kill
    between their renames (rename 4) left epoch-2 weights with epoch-1 metadata."""
    from ft_pipelines.core.utils import atomic

    calls, real_replace = [], os.replace

    def dying_replace(src, dst):
        calls.append(dst)
        if len(calls) == kill_at:
            raise Killed(f"killed at rename {kill_at}")
        real_replace(src, dst)

    monkeypatch.setattr(atomic.os, "replace", dying_replace)
    try:
        run(tiny_model(), CONFIG, tmp_path)
    except Killed:
        pass
    else:  # the run wrote fewer files than this kill point: it finished, nothing to kill
        assert len(calls) < kill_at
    monkeypatch.setattr(atomic.os, "replace", real_replace)
    resumed = tiny_model()
    history = run(resumed, CONFIG, tmp_path)
    _assert_same_weights(reference[0], resumed)
    assert history["val_acc"].tolist() == reference[1]["val_acc"].tolist()


def test_a_kill_in_the_middle_of_writing_the_file_keeps_the_previous_epoch(tmp_path, monkeypatch,
                                                                            reference):
    from ft_pipelines.core.training import checkpoint

    real_save, saves = checkpoint.save_file, []

    def half_then_die(tensors, path, metadata=None):
        saves.append(path)
        if len(saves) == 2:  # epoch 2: half the file, then the kill
            real_save(dict(list(tensors.items())[: len(tensors) // 2]), path, metadata=metadata)
            raise Killed("killed mid-write")
        real_save(tensors, path, metadata=metadata)

    monkeypatch.setattr(checkpoint, "save_file", half_then_die)
    with pytest.raises(Killed):
        run(tiny_model(), CONFIG, tmp_path)
    monkeypatch.undo()
    assert load_checkpoint(tmp_path)[1]["epoch"] == 1
    assert sorted(os.listdir(tmp_path)) == [CHECKPOINT_FILE]  # no temporary left
    resumed = tiny_model()
    run(resumed, CONFIG, tmp_path)
    _assert_same_weights(reference[0], resumed)


def _unusable_files(folder) -> list[str]:
    return sorted(n for n in os.listdir(folder) if ".unusable-" in n)


def test_a_truncated_checkpoint_is_set_aside_with_a_warning(tmp_path, caplog, reference):
    with pytest.raises(KeyboardInterrupt):
        run(tiny_model(), CONFIG, tmp_path, extra=[Crash(1, None)])
    path = tmp_path / CHECKPOINT_FILE
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    resumed = tiny_model()
    with caplog.at_level(logging.WARNING):
        history = run(resumed, CONFIG, tmp_path)
    assert len(history) == 3
    _assert_same_weights(reference[0], resumed)  # started over: nothing of the bad file used
    assert len(_unusable_files(tmp_path)) == 1
    assert str(path) in caplog.text and "cannot be used" in caplog.text


def test_a_checkpoint_of_another_network_is_set_aside_not_loaded_half(tmp_path, caplog,
                                                                      reference):
    with pytest.raises(KeyboardInterrupt):
        run(tiny_model(classes=4), CONFIG, tmp_path, extra=[Crash(1, None)])
    resumed = tiny_model()  # 3 classes: the head's shapes differ, every other tensor fits
    with caplog.at_level(logging.WARNING):
        run(resumed, CONFIG, tmp_path)
    _assert_same_weights(reference[0], resumed)
    assert len(_unusable_files(tmp_path)) == 1
    assert "another network" in caplog.text and "fc." in caplog.text


def test_a_file_of_another_format_is_set_aside(tmp_path, caplog, reference):
    from safetensors.torch import save_file

    save_file({"model.fc.weight": torch.zeros(3, 16)}, str(tmp_path / CHECKPOINT_FILE))
    resumed = tiny_model()
    with caplog.at_level(logging.WARNING):
        run(resumed, CONFIG, tmp_path)
    _assert_same_weights(reference[0], resumed)
    assert "format" in caplog.text and len(_unusable_files(tmp_path)) == 1


@pytest.mark.parametrize("killed_after_epoch", [2, 3])
def test_early_stopping_state_and_stop_flag_survive_a_kill(tmp_path, killed_after_epoch):
    # no learning: accuracy never improves after epoch 1, so patience 2 stops after epoch 3
    config = TrainConfig(epochs=6, batch_size=16, lr_pretrained=1e-9, lr_new=1e-9,
                         patience=2, progress=False)
    with pytest.raises(KeyboardInterrupt):
        run(tiny_model(), config, tmp_path, extra=[Crash(killed_after_epoch - 1, None)])
    history = run(tiny_model(), config, tmp_path)
    assert history["epoch"].tolist() == [1, 2, 3]


def test_callback_state_follows_the_callback_when_the_progress_bar_is_toggled(tmp_path,
                                                                              reference):
    with pytest.raises(KeyboardInterrupt):
        run(tiny_model(), CONFIG, tmp_path, extra=[Crash(1, None)])
    resumed = tiny_model()
    with_bar = TrainConfig(**{**CONFIG.__dict__, "progress": True})
    trainer = Trainer(resumed, with_bar, callbacks=default_callbacks(with_bar, tmp_path))
    trainer.fit(tiny_data(), tiny_data(24, seed=1))
    _assert_same_weights(reference[0], resumed)


def test_finished_trainings_are_reported_once_for_removal(tmp_path):
    take_finished_checkpoints()
    run(tiny_model(), TrainConfig(epochs=1, batch_size=16, progress=False), tmp_path / "a")
    assert take_finished_checkpoints() == [tmp_path / "a"]
    assert take_finished_checkpoints() == []


def test_a_checkpoint_failing_half_way_through_loading_leaves_nothing_loaded(tmp_path, caplog,
                                                                            reference):
    """Weights fit, the optimizer state does not: the weights already copied must be undone."""
    import json

    from safetensors.torch import save_file

    with pytest.raises(KeyboardInterrupt):
        run(tiny_model(), CONFIG, tmp_path, extra=[Crash(1, None)])
    tensors, meta = load_checkpoint(tmp_path)
    meta["optimizer"]["param_groups"] = []
    header = {"format": CHECKPOINT_FORMAT, "meta": json.dumps(meta)}
    save_file(tensors, str(tmp_path / CHECKPOINT_FILE), metadata=header)
    resumed = tiny_model()
    with caplog.at_level(logging.WARNING):
        run(resumed, CONFIG, tmp_path)
    _assert_same_weights(reference[0], resumed)
    assert len(_unusable_files(tmp_path)) == 1
