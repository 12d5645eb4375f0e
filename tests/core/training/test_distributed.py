"""Data-parallel training: 2 gloo processes x batch B/2 give the weights of 1 process x batch B
(frozen BatchNorm, no dropout in the trained part), uneven last batch included, and a 2-process
run resumed from rank 0's checkpoint ends where an uninterrupted run does."""

import torch

from ft_pipelines.core.models import BackboneLayout, LayoutFamily, register_layout
from ft_pipelines.core.training import TrainConfig, Trainer, default_callbacks
from ft_pipelines.core.training.distributed import rank_slice, spawn_data_parallel, world
from tests.conftest import MULTI_PROCESS
from tests.core.training.tiny import TinyNet, tiny_data, tiny_model

pytestmark = MULTI_PROCESS


def _register_tiny() -> None:
    register_layout("tiny_resnet", LayoutFamily(
        matches=lambda model: isinstance(model, TinyNet),
        describe=lambda model: BackboneLayout(
            "fc", ("conv1", "bn1", "relu", "maxpool"), ("layer1", "layer2", "layer3", "layer4")),
        forward_head=lambda model, fm: model.fc(torch.flatten(model.avgpool(fm), 1)),
    ))


def _train_tiny(config: TrainConfig, use_cache: bool, checkpoint_dir=None):
    """One rank's training (module level: the spawned processes import it)."""
    _register_tiny()  # a spawned process starts with the stock registry
    model = tiny_model(1)
    for module in model.modules():  # frozen BN: batch slices would otherwise see other stats
        if isinstance(module, torch.nn.BatchNorm2d):
            module.requires_grad_(False)
    config = config.model_copy(update={"use_cache": use_cache})
    trainer = Trainer(model, config, callbacks=default_callbacks(config, checkpoint_dir))
    history = trainer.fit(tiny_data(45), tiny_data(20, seed=1))
    return model.state_dict(), history, world(), trainer.start_epoch


def _train_killed_then_resumed(checkpoint_dir):
    """One rank: a run of 1 epoch (as if killed after epoch 1), then the 2-epoch run resuming
    from rank 0's checkpoint. One spawn for both: each spawned rank imports torch again."""
    _train_tiny(_config(1), True, checkpoint_dir)
    torch.distributed.barrier()  # rank 0's checkpoint is written before any rank resumes
    wrote_checkpoint = any(checkpoint_dir.iterdir())
    return (*_train_tiny(_config(), True, checkpoint_dir), wrote_checkpoint)


def _config(epochs: int = 2) -> TrainConfig:
    return TrainConfig(epochs=epochs, batch_size=16, lr_pretrained=0.05, lr_new=0.1, momentum=0.9,
                       schedule="constant", progress=False, device="cpu", precision="fp32")


def test_two_processes_equal_one_process_with_the_whole_batch(tmp_path):
    single, single_history, _, _ = _train_tiny(_config(), use_cache=True)
    # two processes, killed after epoch 1 (a run of 1 epoch), then resumed for epoch 2
    double, double_history, ranks, start_epoch, wrote_checkpoint = spawn_data_parallel(
        _train_killed_then_resumed, (tmp_path,), 2, "cpu")
    assert wrote_checkpoint and start_epoch == 1  # resumed after epoch 1 from rank 0's file
    assert ranks == (0, 2) and len(double_history) == 2
    for name, value in single.items():
        torch.testing.assert_close(double[name], value, rtol=1e-4, atol=1e-5, msg=name)
    moved = any(not torch.equal(tiny_model(1).state_dict()[k], v)
                for k, v in single.items())
    assert moved  # the comparison is between trained weights, not two initial copies
    for column in ("train_loss", "train_acc", "val_loss", "val_acc"):
        torch.testing.assert_close(torch.tensor(double_history[column].to_numpy()),
                                   torch.tensor(single_history[column].to_numpy()),
                                   rtol=1e-4, atol=1e-5)


def test_rank_slices_cover_the_batch_and_weigh_to_its_mean():
    batch = torch.arange(13)
    parts = [rank_slice(batch, rank, 2) for rank in range(2)]
    assert torch.equal(torch.cat([p for p, _ in parts]), batch)
    assert all(w == 2 / 13 for _, w in parts)
    part, weight = rank_slice(torch.arange(1), 1, 2)  # more ranks than samples
    assert len(part) == 1 and weight == 0.0
