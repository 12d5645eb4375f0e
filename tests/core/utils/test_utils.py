"""The generic helpers: atomic writes and the mode save/restore context manager."""

import os
import stat

import pytest
from torch import nn

from ft_pipelines.core.utils import atomic_write, preserved_modes


def test_atomic_write_creates_a_readable_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "sub" / "out.txt"
    atomic_write(target, lambda tmp: open(tmp, "w").write("hello"))  # noqa: SIM115
    assert target.read_text() == "hello"
    assert stat.S_IMODE(os.stat(target).st_mode) == 0o644
    assert os.listdir(target.parent) == ["out.txt"]


def test_atomic_write_failure_keeps_the_old_file_and_removes_the_temporary(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old")

    def half_write(tmp: str) -> None:
        with open(tmp, "w") as handle:
            handle.write("half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(target, half_write)
    assert target.read_text() == "old"
    assert os.listdir(tmp_path) == ["out.txt"]


def test_preserved_modes_restores_every_submodule_not_only_the_top():
    net = nn.Sequential(nn.Conv2d(3, 3, 1), nn.BatchNorm2d(3), nn.Dropout())
    net.train()
    net[1].eval()  # e.g. a frozen BatchNorm kept in eval mode
    with preserved_modes(net, training=False):
        assert not any(m.training for m in net.modules())
    assert net.training and not net[1].training and net[2].training
    with preserved_modes(net):  # no mode given: left as it is, restored after
        net.train()
    assert not net[1].training
