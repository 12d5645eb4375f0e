"""Weight-source errors name the parameter at fault: an unknown architecture is blamed on
``backbone.architecture`` with close matches (not on ``backbone.weights``); timm says "no
network" only when the network failed, and an unknown timm name or tag says so."""

from __future__ import annotations

import pickle

import pytest
import torch

from ft_pipelines.core.models import load_backbone
from ft_pipelines.core.models.sources import is_network_failure


def test_unknown_torchvision_architecture_is_blamed_on_the_architecture():
    with pytest.raises(ValueError, match="backbone.architecture") as info:
        load_backbone("torchvision", "resnet1B")
    message = str(info.value)
    assert "backbone.weights" not in message
    assert "Did you mean: resnet18" in message


def test_unknown_torchvision_weights_list_the_names():
    with pytest.raises(ValueError, match=r"backbone.weights='IMAGENET_V9'.*IMAGENET1K_V1"):
        load_backbone("torchvision", "resnet18", weights="IMAGENET_V9")


def test_unknown_timm_name_is_not_called_a_network_problem(no_network):
    with pytest.raises(ValueError, match="backbone.architecture") as info:
        load_backbone("timm", "efficientnet_lite9")
    assert "no network" not in str(info.value)
    assert "efficientnet_lite0" in str(info.value)  # a close match
    assert no_network == []  # decided before any download


def test_unknown_timm_tag_lists_the_tags(no_network):
    with pytest.raises(ValueError, match=r"backbone.weights='in99k'.*a1_in1k"):
        load_backbone("timm", "resnet18", weights="in99k")
    assert no_network == []


def test_timm_without_network_says_no_network(no_network, tmp_path, monkeypatch):
    import huggingface_hub.utils._http as hub_http

    monkeypatch.setenv("HF_HOME", str(tmp_path))  # nothing cached
    monkeypatch.setattr(hub_http.time, "sleep", lambda seconds: None)  # no retry back-off
    with pytest.raises(FileNotFoundError, match="no network"):
        load_backbone("timm", "resnet18", weights="a1_in1k")
    assert no_network  # it really tried, and the refused connection is what it reports


def test_other_timm_failures_are_not_reported_as_no_network(monkeypatch):
    import timm

    def broken(*args, **kwargs):
        raise RuntimeError("checkpoint has unexpected keys")

    monkeypatch.setattr(timm, "create_model", broken)
    with pytest.raises(RuntimeError, match="timm could not load.*unexpected keys") as info:
        load_backbone("timm", "resnet18", weights="a1_in1k")
    assert "no network" not in str(info.value)


def test_network_failure_is_found_in_the_cause_chain():
    import socket
    from urllib.error import URLError

    try:
        try:
            raise socket.gaierror("no DNS")
        except OSError as inner:
            raise RuntimeError("wrapped") from inner
    except RuntimeError as outer:
        assert is_network_failure(outer)
    assert is_network_failure(URLError("refused"))
    assert not is_network_failure(PermissionError("cache folder not writable"))
    assert not is_network_failure(RuntimeError("size mismatch"))


class _Pickled:
    """Not a tensor: what a whole pickled model or custom object holds."""


@pytest.mark.parametrize(("name", "content"), [
    ("model.pth", lambda: pickle.dumps({"model": _Pickled()})),
    ("model.pt", lambda: b"not a pickle at all"),
    ("model.safetensors", lambda: pickle.dumps({"weights": torch.zeros(3)})),
])
def test_a_pickle_given_as_backbone_file_names_the_file_and_the_key(tmp_path, name, content):
    path = tmp_path / name
    path.write_bytes(content())
    with pytest.raises(ValueError) as info:
        load_backbone("file", "efficientnet_lite0", path=str(path))
    message = str(info.value)
    assert f"backbone.path={str(path)!r}" in message and "state dict" in message
    assert "weights_only=False" not in message and "weights_only" not in str(info.value.__cause__)


def test_a_state_dict_of_other_things_is_refused_naming_the_key(tmp_path):
    path = tmp_path / "weights.pth"
    torch.save([torch.zeros(2)], path)
    with pytest.raises(ValueError, match=r"is not a state dict \(tensors by name\) but a list"):
        load_backbone("file", "efficientnet_lite0", path=str(path))
