"""The training recipe (issue 19): layer-wise learning rates, EMA, augmentation policies and
mixup/cutmix, gradient accumulation, class balance, the LR range test. Each ingredient is checked
against its formula; the default run is checked to stay as it was."""

from __future__ import annotations

import pytest

from ft_pipelines.core.models import freeze_all_but
from ft_pipelines.core.training import TrainConfig, build_optimizer
from ft_pipelines.core.utils import head_parameter_names
from tests.core.training.tiny import tiny_model

# --------------------------------------------------------------------- layer-wise learning rates


def _rates(model, config) -> dict[str, float]:
    optimizer = build_optimizer(model, config, head_parameter_names(model), set())
    return {id(p): group["base_lr"] for group in optimizer.param_groups for p in group["params"]}


def _rate_of(model, rates, name):
    return rates[id(dict(model.named_parameters())[name])]


def test_layer_decay_on_the_tiny_resnet_layout():
    model = tiny_model("all")
    config = TrainConfig(lr_pretrained=0.01, lr_new=0.1, layer_decay=0.5)
    rates = _rates(model, config)
    assert _rate_of(model, rates, "fc.weight") == 0.1  # the head: lr_new
    # layer4 is next to the head (depth 1) ... layer1 depth 4, the stem depth 5
    expected = {"layer4.0.weight": 0.01, "layer3.0.weight": 0.005, "layer2.1.weight": 0.0025,
                "layer1.0.bias": 0.00125, "conv1.weight": 0.000625, "bn1.weight": 0.000625}
    for name, lr in expected.items():
        assert _rate_of(model, rates, name) == pytest.approx(lr), name
    # without layer_decay: the two rates as before
    plain = _rates(model, TrainConfig(lr_pretrained=0.01, lr_new=0.1))
    assert {_rate_of(model, plain, n) for n in expected} == {0.01}


def test_layer_decay_on_the_bundled_efficientnet_lite(fresh_backbone):
    model = freeze_all_but(fresh_backbone, 3)  # blocks.4-6, the tail and the head train
    rates = _rates(model, TrainConfig(lr_pretrained=0.02, lr_new=0.2, layer_decay=0.7))
    assert _rate_of(model, rates, "classifier.weight") == 0.2
    assert _rate_of(model, rates, "conv_head.weight") == pytest.approx(0.02)  # tail: depth 1
    assert _rate_of(model, rates, "blocks.6.0.conv_pw.weight") == pytest.approx(0.02)
    assert _rate_of(model, rates, "blocks.5.0.conv_pw.weight") == pytest.approx(0.02 * 0.7)
    assert _rate_of(model, rates, "blocks.4.0.conv_pw.weight") == pytest.approx(0.02 * 0.7**2)
    assert "blocks.3.0.conv_pw.weight" not in {  # frozen: in no group
        n for n, p in model.named_parameters() if id(p) in rates}


@pytest.mark.parametrize("value", [0.0, 1.0, 1.5])
def test_layer_decay_outside_0_1_is_refused(value):
    with pytest.raises(ValueError, match="layer_decay"):
        TrainConfig(layer_decay=value)
