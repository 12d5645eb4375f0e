import json

import pytest
from kedro.io import Version
from kedro.io.core import DatasetError

from ft_pipelines.core.export.artifact import NotExported
from ft_pipelines.core.export.exporter import export_classifier, export_onnx
from ft_pipelines.core.models import replace_head
from ft_pipelines.datasets import ModelArtifactDataset, OnnxModelDataset
from tests.core.export.conftest import CLASSES, MEAN, SIZE, STD, tiny_net

V1, V2 = "2026-01-01T00.00.00.000Z", "2026-01-02T00.00.00.000Z"


@pytest.fixture()
def tiny_onnx():
    return export_onnx(tiny_net(), CLASSES, SIZE, MEAN, STD)


def dataset(tmp_path, load=None, save=None, **kwargs):
    return OnnxModelDataset(str(tmp_path / "model.onnx"), version=Version(load, save), **kwargs)


def test_versioned_round_trip_writes_onnx_and_sidecar(tmp_path, tiny_onnx):
    dataset(tmp_path, save=V1).save(tiny_onnx)
    folder = tmp_path / "model.onnx" / V1
    assert sorted(p.name for p in folder.iterdir()) == ["model.json", "model.onnx"]
    assert json.loads((folder / "model.json").read_text()) == tiny_onnx.sidecar
    loaded = dataset(tmp_path).load()
    assert loaded.model_bytes == tiny_onnx.model_bytes and loaded.sidecar == tiny_onnx.sidecar
    with pytest.raises(DatasetError, match="must not exist"):
        dataset(tmp_path, save=V1).save(tiny_onnx)


def test_a_modified_file_is_refused(tmp_path, tiny_onnx):
    dataset(tmp_path, save=V1).save(tiny_onnx)
    onnx_file = tmp_path / "model.onnx" / V1 / "model.onnx"
    onnx_file.write_bytes(onnx_file.read_bytes()[:-1])
    with pytest.raises(DatasetError, match="does not match the ONNX bytes"):
        dataset(tmp_path).load()


def test_not_exported_writes_nothing_and_missing_ok_loads_none(tmp_path, tiny_onnx):
    dataset(tmp_path, save=V1).save(NotExported("export.quantize is null"))
    assert not (tmp_path / "model.onnx").exists()
    assert dataset(tmp_path, load_args={"missing_ok": True}).load() is None
    with pytest.raises(DatasetError, match="No version of .* is stored yet: export a model first"):
        dataset(tmp_path).load()
    dataset(tmp_path, save=V2).save(tiny_onnx)
    assert dataset(tmp_path, load_args={"missing_ok": True}).load().sha256 == tiny_onnx.sha256


def test_refuses_other_paths_and_options(tmp_path):
    with pytest.raises(DatasetError, match="must end in .onnx"):
        OnnxModelDataset(str(tmp_path / "model.bin"))
    with pytest.raises(DatasetError, match="missing_ok"):
        OnnxModelDataset(str(tmp_path / "m.onnx"), load_args={"lazy": True})


def test_sidecar_names_the_model_artifact_version_it_came_from(tmp_path, fresh_backbone):
    model = replace_head(fresh_backbone, 3)
    artifacts = ModelArtifactDataset(str(tmp_path / "pruned_model.safetensors"),
                                     version=Version(None, V1))
    artifacts.save(model)
    loaded = ModelArtifactDataset(str(tmp_path / "pruned_model.safetensors"),
                                  version=Version(None, None)).load()
    source = export_classifier(loaded, ["a", "b", "c"]).sidecar["source_model"]
    assert source["artifact"]["version"] == V1
    assert source["artifact"]["path"].endswith(f"pruned_model.safetensors/{V1}/"
                                               "pruned_model.safetensors")
    assert source["artifact"]["sha256"] == source["sha256"]
    for parameter in loaded.parameters():  # changed after loading: no longer that artifact
        parameter.data.mul_(0.5)
        break
    assert export_classifier(loaded, ["a", "b", "c"]).sidecar["source_model"]["artifact"] is None


def _edit_sidecar(tmp_path, tiny_onnx, edit):
    dataset(tmp_path, save=V1).save(tiny_onnx)
    sidecar = tmp_path / "model.onnx" / V1 / "model.json"
    described = json.loads(sidecar.read_text())
    edit(described)
    sidecar.write_text(json.dumps(described))
    return sidecar


@pytest.mark.parametrize(("edit", "refusal"), [
    (lambda s: s["input"].update(std=[0, 0, 0]), "input.std must be 3 finite numbers > 0"),
    (lambda s: s["input"].update(std=[0.2, -1, 0.2]), "input.std must be 3 finite numbers > 0"),
    (lambda s: s["input"].update(mean=[0.5, 0.5]), "input.mean must be 3 finite numbers"),
    (lambda s: s["input"].update(mean=[float("nan")] * 3), "input.mean must be 3 finite"),
    (lambda s: s.update(input_size=60000), "input_size must be an integer in [8, 4096]"),
    (lambda s: s.update(input_size="32"), "input_size must be an integer"),
    (lambda s: s.update(input_size=SIZE * 2), f"input_size={SIZE * 2} but the graph takes"),
    (lambda s: s.update(class_names=s["class_names"][:-1]),
     f"class_names has {len(CLASSES) - 1} names but the graph outputs {len(CLASSES)}"),
    (lambda s: s.update(class_names="abc"), "class_names must be a non-empty list of strings"),
    (lambda s: s.update(temperature=0), "temperature must be a finite number > 0"),
    (lambda s: s.update(temperature=float("inf")), "temperature must be a finite number > 0"),
    (lambda s: s.update(temperature="2"), "temperature must be a finite number > 0"),
])
def test_a_crafted_sidecar_is_refused_naming_the_file_and_the_fix(tmp_path, tiny_onnx, edit,
                                                                 refusal):
    sidecar = _edit_sidecar(tmp_path, tiny_onnx, edit)
    with pytest.raises(DatasetError) as info:
        dataset(tmp_path).load()
    message = str(info.value)
    assert str(sidecar) in message and refusal in message
    assert "kedro run --pipelines=export" in message


def test_a_sidecar_that_is_not_json_names_the_file(tmp_path, tiny_onnx):
    dataset(tmp_path, save=V1).save(tiny_onnx)
    sidecar = tmp_path / "model.onnx" / V1 / "model.json"
    sidecar.write_text("{not json")
    with pytest.raises(DatasetError, match=f"{sidecar}: not a JSON sidecar"):
        dataset(tmp_path).load()


def test_a_sidecar_without_temperature_loads_at_one_and_a_stored_one_round_trips(tmp_path,
                                                                               tiny_onnx):
    assert "temperature" not in tiny_onnx.sidecar  # as written before calibration existed
    dataset(tmp_path, save=V1).save(tiny_onnx)
    assert dataset(tmp_path, load=V1).load().temperature == 1.0
    calibrated = tiny_onnx.with_graph(tiny_onnx.model_bytes, temperature=2.5)
    dataset(tmp_path, save=V2).save(calibrated)
    assert dataset(tmp_path, load=V2).load().temperature == 2.5
