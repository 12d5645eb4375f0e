import numpy as np
import pytest
import skimage.data
import torch

from ft_pipelines.core.models import feature_units, forward_head, load_backbone
from ft_pipelines.core.models.config import IMAGENET_MEAN, IMAGENET_STD


def _imagenet_top3(model, image: np.ndarray) -> list[int]:
    x = torch.from_numpy(image).permute(2, 0, 1).float()[None] / 255
    x = torch.nn.functional.interpolate(x, size=(224, 224), mode="bilinear", antialias=True)
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    with torch.inference_mode():
        return model.eval()((x - mean) / std).topk(3).indices[0].tolist()


def test_bundled_weights_classify_imagenet_photos(bundled_backbone):
    cfg = bundled_backbone.backbone_cfg
    assert (cfg.source, cfg.library, cfg.architecture) == ("bundled", "timm", "efficientnet_lite0")
    assert cfg.num_source_classes == 1000 and cfg.layout.classifier == "classifier"
    assert _imagenet_top3(bundled_backbone, skimage.data.chelsea())[0] in (285, 282, 281)
    assert set(_imagenet_top3(bundled_backbone, skimage.data.chelsea())) == {285, 282, 281}
    assert _imagenet_top3(bundled_backbone, skimage.data.coffee())[0] == 967


def test_sequential_view_equals_model_forward(bundled_backbone):
    x = torch.randn(2, 3, 64, 64)
    model = bundled_backbone.eval()
    with torch.inference_mode():
        h = x
        for _, unit in feature_units(model):
            h = unit(h)
        assert torch.allclose(forward_head(model, h), model(x), atol=1e-5)


@pytest.mark.parametrize(("spec", "message"), [
    ({"source": "nope"}, "backbone.source"),
    ({"source": "none", "architecture": "resnet_does_not_exist"}, "backbone.architecture"),
    ({"source": "file", "architecture": "resnet18", "path": "/does/not/exist.pth"},
     "/does/not/exist.pth"),
    ({"source": "bundled", "architecture": "resnet18"}, "efficientnet_lite0"),
])
def test_bad_backbone_specs_name_the_parameter(spec, message):
    with pytest.raises((ValueError, FileNotFoundError), match=message):
        load_backbone(**spec)


def test_offline_torchvision_download_names_the_cache_file(no_network):
    with pytest.raises(FileNotFoundError, match=r"resnet18-.*\.pth.*backbone.source=file"):
        load_backbone("torchvision", "resnet18", weights="IMAGENET1K_V1")


def test_file_source_loads_a_plain_state_dict(tmp_path):
    from safetensors.torch import save_file

    reference = load_backbone("none", "resnet18")
    save_file(reference.state_dict(), tmp_path / "r18.safetensors")
    loaded = load_backbone("file", "resnet18", path=str(tmp_path / "r18.safetensors"))
    x = torch.randn(1, 3, 64, 64)
    with torch.inference_mode():
        assert torch.equal(reference.eval()(x), loaded.eval()(x))
    assert loaded.backbone_cfg.layout.blocks == ("layer1", "layer2", "layer3", "layer4")
