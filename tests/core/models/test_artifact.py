import copy
import json
import os
import pickle
import re
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from ft_pipelines.core.data import ImageData
from ft_pipelines.core.models import (
    apply_surgery,
    load_backbone,
    load_model_file,
    replace_head,
    save_model_file,
)
from ft_pipelines.core.models.artifact import SPEC_KEY, newest_artifact, read_artifact
from ft_pipelines.core.pruning import prune_by_importance, score_channels

SRC = Path(__file__).resolve().parents[3] / "src"


def _same_outputs(a, b, size=64):
    x = torch.randn(2, 3, size, size)
    with torch.inference_mode():
        return torch.equal(a.eval()(x), b.eval()(x))


def test_round_trip_gives_identical_outputs_and_freezing(tmp_path, fresh_backbone):
    model = apply_surgery(fresh_backbone, 5, trainable_blocks=2, drop_blocks=1)
    save_model_file(model, tmp_path / "m.safetensors")
    loaded = load_model_file(tmp_path / "m.safetensors")
    assert _same_outputs(model, loaded)
    assert loaded.surgery == model.surgery
    assert loaded.backbone_cfg == model.backbone_cfg
    assert [p.requires_grad for p in loaded.parameters()] == [
        p.requires_grad for p in model.parameters()]


def test_pruned_model_round_trips_with_its_channel_counts(tmp_path, fresh_backbone):
    model = apply_surgery(fresh_backbone, 4, trainable_blocks="all")
    data = ImageData(torch.randint(0, 255, (8, 3, 64, 64), dtype=torch.uint8),
                     torch.arange(8) % 4)
    table = score_channels(copy.deepcopy(model), data, "l1")
    prune_by_importance(model, table, torch.randn(1, 3, 64, 64), 0.3,
                        ignored_layers=[model.classifier])
    assert model.conv_head.out_channels < 1280
    save_model_file(model, tmp_path / "pruned.safetensors")
    loaded = load_model_file(tmp_path / "pruned.safetensors")
    assert loaded.conv_head.out_channels == model.conv_head.out_channels
    assert _same_outputs(model, loaded)


def test_pickle_in_place_of_an_artifact_is_refused(tmp_path, bundled_backbone):
    path = tmp_path / "model.safetensors"
    path.write_bytes(pickle.dumps({"weights": torch.zeros(3)}))
    with pytest.raises(ValueError, match="not a valid ft_pipelines model artifact"):
        load_model_file(path)


def test_truncated_artifact_is_refused(tmp_path, bundled_backbone):
    path = tmp_path / "model.safetensors"
    save_model_file(bundled_backbone, path)
    path.write_bytes(path.read_bytes()[:5000])
    with pytest.raises(ValueError, match="not a valid ft_pipelines model artifact"):
        load_model_file(path)


def test_spec_with_unknown_architecture_is_refused(tmp_path):
    import json

    from safetensors.torch import save_file

    spec = {"format": "ft_pipelines.model/1", "backbone": {
        "source": "none", "library": "auto", "architecture": "no_such_net", "weights": None,
        "input_size": 64, "mean": [0, 0, 0], "std": [1, 1, 1], "num_source_classes": 10,
        "layout": {"classifier": "fc"}}}
    path = tmp_path / "m.safetensors"
    save_file({"w": torch.zeros(1)}, path, metadata={"ft_pipelines.spec": json.dumps(spec)})
    with pytest.raises(ValueError, match="no_such_net"):
        load_model_file(path)


def test_no_code_path_calls_an_unsafe_torch_load():
    offenders = []
    for file in SRC.rglob("*.py"):
        for call in re.findall(r"torch\.load\(([^)]*)\)", file.read_text()):
            if "weights_only=True" not in call:
                offenders.append(f"{file}: torch.load({call})")
    assert not offenders, offenders


def test_artifact_source_loads_a_saved_model_file_or_newest_in_folder(tmp_path, fresh_backbone):
    model = apply_surgery(fresh_backbone, 5, trainable_blocks=1)
    save_model_file(model, tmp_path / "2026-01-01" / "m.safetensors")
    for path in (tmp_path / "2026-01-01" / "m.safetensors", tmp_path):
        loaded = load_backbone("artifact", path=str(path))
        assert _same_outputs(model, loaded)
        assert loaded.surgery == model.surgery
    with pytest.raises(ValueError, match="source=artifact"):
        load_backbone("file", "efficientnet_lite0", path=str(tmp_path))
    with pytest.raises(ValueError, match="backbone.path"):
        load_backbone("artifact")


def test_an_architecture_not_buildable_on_the_meta_device_is_checked_from_its_header(tmp_path):
    """torchvision's RegNets copy data while they are built: their spec is checked against the
    file's shapes directly (a genuine file loads, a crafted channel count is refused)."""
    model = replace_head(load_backbone("none", "regnet_x_400mf", input_size=32), 3)
    path = tmp_path / "regnet.safetensors"
    save_model_file(model, path)
    assert _same_outputs(model, load_model_file(path), size=32)
    spec, tensors = read_artifact(path)
    spec["channels"]["stem.1"] = [250_000_000]
    save_file(tensors, str(path), metadata={SPEC_KEY: json.dumps(spec)})
    refusal = re.escape("stem.1: file (32,), spec channels [250000000]")
    with pytest.raises(ValueError, match=refusal):
        load_model_file(path)


def test_the_newest_artifact_of_a_folder_is_the_latest_version_not_the_last_name(tmp_path):
    old, new = "2026-01-01T00.00.00.000Z", "2026-03-01T00.00.00.000Z"
    for name, version in (("finetuned_model", new), ("pruned_model", old)):
        (tmp_path / f"{name}.safetensors" / version).mkdir(parents=True)
        (tmp_path / f"{name}.safetensors" / version / f"{name}.safetensors").write_bytes(b"")
    (tmp_path / "finetuned_model.safetensors" / new / ".finetuned.safetensors").write_bytes(b"")
    assert newest_artifact(tmp_path) == (
        tmp_path / "finetuned_model.safetensors" / new / "finetuned_model.safetensors")
    plain = tmp_path / "plain"
    plain.mkdir()
    for name, age in (("a.safetensors", 0), ("b.safetensors", 3600)):
        (plain / name).write_bytes(b"")
        os.utime(plain / name, (time.time() - age, time.time() - age))
    assert newest_artifact(plain) == plain / "a.safetensors"
