"""A stored model artifact is loaded from itself alone: a crafted spec naming a hub repository,
a local folder, a path or a URL as its architecture is refused before anything is fetched or
read, and weights that do not fit the spec are refused naming the file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from kedro.io import Version
from kedro.io.core import DatasetError
from safetensors import safe_open
from safetensors.torch import save_file

from ft_pipelines.core.models import apply_surgery, record_training_data
from ft_pipelines.core.models.artifact import SPEC_KEY
from ft_pipelines.datasets import ModelArtifactDataset
from tests.core.models.conftest import no_network  # noqa: F401 - the fixture


def _stored_artifact(folder: Path, model) -> tuple[ModelArtifactDataset, Path]:
    dataset = ModelArtifactDataset(str(folder / "model.safetensors"), Version(None, None))
    dataset.save(model)
    return dataset, Path(str(dataset._get_load_path()))


def _rewrite(path: Path, edit_spec=None, edit_tensors=None) -> None:
    with safe_open(str(path), framework="pt") as handle:
        metadata = handle.metadata()
        tensors = {k: handle.get_tensor(k) for k in handle.keys()}  # noqa: SIM118
    spec = json.loads(metadata[SPEC_KEY])
    if edit_spec:
        edit_spec(spec)
    if edit_tensors:
        edit_tensors(tensors)
    save_file(tensors, str(path), metadata={SPEC_KEY: json.dumps(spec)})


@pytest.fixture()
def stored(tmp_path, fresh_backbone):
    model = apply_surgery(fresh_backbone, 3, trainable_blocks=1)
    return _stored_artifact(tmp_path, record_training_data(model, class_names=["a", "b", "c"]))


def test_a_genuine_artifact_loads_with_the_classes_it_is_for(stored):
    dataset, _ = stored
    model = dataset.load()
    assert model.trained_on == {"classes": ["a", "b", "c"], "data_fingerprint": None}


@pytest.mark.parametrize("architecture", [
    "hf-hub:timm/resnet18.a1_in1k",
    "local-dir:/etc",
    "/etc/passwd",
    "https://example.com/model.safetensors",
])
@pytest.mark.parametrize("library", ["timm", "torchvision"])
def test_a_crafted_architecture_is_refused_without_any_network_call(
        stored, no_network, architecture, library, monkeypatch):  # noqa: F811
    import huggingface_hub.utils._http as hub_http

    monkeypatch.setattr(hub_http.time, "sleep", lambda seconds: None)  # fail fast if it tries
    dataset, path = stored

    def craft(spec):
        spec["backbone"].update(library=library, architecture=architecture)

    _rewrite(path, edit_spec=craft)
    with pytest.raises(DatasetError) as info:
        dataset.load()
    message = str(info.value)
    assert "refusing to load" in message and str(path) in message
    assert repr(architecture) in message and "backbone.architecture" in message
    assert no_network == []  # not even a name lookup


def test_weights_that_do_not_fit_the_spec_name_the_file(stored):
    dataset, path = stored

    def stale(tensors):
        tensors["classifier.weight"] = torch.zeros(7, tensors["classifier.weight"].shape[1])

    _rewrite(path, edit_tensors=stale)
    with pytest.raises(DatasetError) as info:
        dataset.load()
    message = str(info.value)
    assert str(path) in message
    assert "classifier.weight: file (7, 1280), spec (3, 1280)" in message
    assert "re-run the stage that wrote it" in message


@pytest.fixture()
def allocations(monkeypatch):
    """(what, size, on the meta device) for every layer resize and architecture build."""
    from ft_pipelines.core.models import artifact

    seen: list[tuple[str, int, bool]] = []
    resize_bn, build = artifact._resize_bn, artifact.build_architecture

    def spy_bn(bn, features):
        seen.append(("bn", features, torch.get_default_device().type == "meta"))
        resize_bn(bn, features)

    def spy_build(architecture, library, num_classes=1000):
        seen.append((architecture, num_classes, torch.get_default_device().type == "meta"))
        return build(architecture, library, num_classes)

    monkeypatch.setattr(artifact, "_resize_bn", spy_bn)
    monkeypatch.setattr(artifact, "build_architecture", spy_build)
    return seen


@pytest.mark.parametrize("features", [250_000_000, 2**40])
def test_a_crafted_channel_count_is_refused_before_anything_of_its_size_is_allocated(
        stored, allocations, features):
    dataset, path = stored
    _rewrite(path, edit_spec=lambda spec: spec["channels"].update(bn1=[features]))
    with pytest.raises(DatasetError) as info:
        dataset.load()
    message = str(info.value)
    assert str(path) in message and "refusing to load" in message
    assert f"bn1.weight: file (32,), spec ({features},)" in message
    assert "re-run the stage that wrote it" in message
    assert all(meta for _, size, meta in allocations if size == features)
    assert all(meta for *_, meta in allocations)  # nothing was built for real


def test_a_crafted_class_count_is_refused_before_its_head_is_allocated(stored, allocations):
    dataset, path = stored

    def craft(spec):  # a huge replaced head, shrunk back by the channel counts
        spec["surgery"]["num_classes"] = 2**40

    _rewrite(path, edit_spec=craft)
    with pytest.raises(DatasetError, match="refusing to load") as info:
        dataset.load()
    assert str(path) in str(info.value)
    assert all(meta for *_, meta in allocations)


def test_an_architecture_swapped_for_a_larger_one_is_never_built(stored, allocations):
    dataset, path = stored
    _rewrite(path, edit_spec=lambda spec: spec["backbone"].update(architecture="efficientnet_b7"))
    with pytest.raises(DatasetError, match="weights do not match") as info:
        dataset.load()
    assert str(path) in str(info.value)
    assert all(meta for *_, meta in allocations)
    assert [name for name, *_ in allocations if name != "bn"] == ["efficientnet_b7"]


def test_a_genuine_artifact_is_checked_on_the_meta_device_then_built_once(stored, allocations):
    dataset, _ = stored
    dataset.load()
    assert [built for built in allocations if built[0] != "bn"] == [
        ("efficientnet_lite0", 3, True), ("efficientnet_lite0", 3, False)]
