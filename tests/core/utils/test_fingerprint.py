"""The checkpoint key: every input of a training run changes it (weights, data, plan, settings,
further inputs such as DELTA's attention table, code, library versions, threads); settings that
only change how the run is shown or kept do not."""

from __future__ import annotations

import pandas as pd
import pytest
import torch
from torch import nn

from ft_pipelines.core.utils import fingerprint, run_fingerprint


def _model(scale: float = 1.0) -> nn.Module:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))
    with torch.no_grad():
        model[0].weight.mul_(scale)
    return model


ATTENTION = pd.DataFrame({"layer": ["a", "a"], "channel": [0, 1], "weight": [0.25, 0.75]})
BASE = {"model": _model(), "data": "images-abc", "plan": {"epochs": 3, "strategy": "partial"},
        "params": {"seed": 0, "batch_size": 16, "delta_probe_images": 256, "progress": True,
                   "device": "auto", "resume": True, "checkpoint_dir": "a",
                   "keep_checkpoints": False},
        "inputs": {"delta_attention": ATTENTION}}


def _key(**changes) -> str:
    case = {**BASE, **changes}
    return run_fingerprint(case["model"], case["data"], case["plan"], case["params"],
                           case["inputs"])


def test_the_same_run_gives_the_same_key():
    assert _key() == _key(model=_model(), inputs={"delta_attention": ATTENTION.copy()})


@pytest.mark.parametrize("change", [
    {"model": _model(scale=1.001)},
    {"data": "images-abd"},
    {"plan": {"epochs": 4, "strategy": "partial"}},
    {"params": {**BASE["params"], "seed": 1}},
    {"params": {**BASE["params"], "delta_probe_images": 128}},
    {"inputs": {"delta_attention": ATTENTION.assign(weight=[0.5, 0.5])}},
    {"inputs": {"delta_attention": ATTENTION.iloc[:0]}},
    {"inputs": {}},
], ids=["weights", "data", "plan", "seed", "delta_probe_images", "attention_values",
        "attention_empty", "no_attention"])
def test_any_input_changes_the_key(change):
    assert _key(**change) != _key()


@pytest.mark.parametrize("setting", [("progress", False), ("device", "cpu"), ("resume", False),
                                     ("checkpoint_dir", "b"), ("keep_checkpoints", True)])
def test_how_a_run_is_shown_or_kept_does_not_change_the_key(setting):
    name, value = setting
    assert _key(params={**BASE["params"], name: value}) == _key()


def test_code_library_versions_and_threads_change_the_key(monkeypatch):
    reference = _key()
    monkeypatch.setattr(fingerprint, "code_fingerprint", lambda: "0.1.0+patched")
    assert _key() != reference
    monkeypatch.undo()
    monkeypatch.setattr(fingerprint, "package_version",
                        lambda name: "9.9" if name == "torch-pruning" else "1.0")
    assert _key() != reference
    monkeypatch.undo()
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(threads + 1)
        assert _key() != reference
    finally:
        torch.set_num_threads(threads)
    assert _key() == reference


def test_the_code_hash_covers_every_source_file(tmp_path, monkeypatch):
    package = tmp_path / "ft_pipelines"
    (package / "core").mkdir(parents=True)
    (package / "core" / "a.py").write_text("x = 1\n")
    monkeypatch.setattr(fingerprint, "_PACKAGE_ROOT", package)
    fingerprint.code_fingerprint.cache_clear()
    try:
        before = fingerprint.code_fingerprint()
        (package / "core" / "a.py").write_text("x = 2\n")  # a bug fix
        fingerprint.code_fingerprint.cache_clear()
        assert fingerprint.code_fingerprint() != before
    finally:
        fingerprint.code_fingerprint.cache_clear()


def test_tables_with_list_cells_are_keyed_too():
    table = pd.DataFrame({"layer": ["a"], "members": [["a", "b"]]})
    other = pd.DataFrame({"layer": ["a"], "members": [["a", "c"]]})
    assert _key(inputs={"t": table}) == _key(inputs={"t": table.copy()})
    assert _key(inputs={"t": table}) != _key(inputs={"t": other})
