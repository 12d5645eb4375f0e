import pytest
import torch

from ft_pipelines.core.models import apply_surgery, load_backbone, surgery_summary

# its module-scoped fixture is built once: all its tests in one xdist worker
pytestmark = pytest.mark.xdist_group("model_surgery")

# (architecture, blocks in its hierarchy, input size for a forward check)
ARCHITECTURES = [
    ("resnet18", 4, 64),
    ("efficientnet_lite0", 7, 64),
    ("mobilenet_v3_small", 12, 64),
    ("densenet121", 8, 64),
    ("vgg11", 20, 64),
    ("vit_b_16", 12, 224),
]


@pytest.fixture(scope="module", params=ARCHITECTURES, ids=[a[0] for a in ARCHITECTURES])
def architecture(request):
    name, blocks, size = request.param
    return load_backbone("none", name, input_size=size), blocks, size


def _trainable(model) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def test_head_is_replaced_and_sized_for_the_classes(architecture):
    import copy

    model, blocks, size = architecture
    assert len(model.backbone_cfg.layout.blocks) == blocks
    model = apply_surgery(copy.deepcopy(model), 7, trainable_blocks=0)
    head = model.get_submodule(model.backbone_cfg.layout.classifier)
    assert head.out_features == 7
    # head only: exactly the head's parameters train
    assert _trainable(model) == sum(p.numel() for p in head.parameters())
    summary = surgery_summary(model)
    assert summary["trainable_params"].sum() == _trainable(model)
    assert summary["params"].sum() == sum(p.numel() for p in model.parameters())
    with torch.inference_mode():
        assert model.eval()(torch.randn(1, 3, size, size)).shape == (1, 7)


def test_partial_freeze_trains_the_last_blocks_only(architecture):
    import copy

    model, blocks, size = architecture
    model = apply_surgery(copy.deepcopy(model), 3, trainable_blocks=2)
    layout = model.backbone_cfg.layout
    expected = sum(p.numel() for path in (*layout.blocks[-2:], *layout.tail, layout.classifier)
                   for p in model.get_submodule(path).parameters())
    assert _trainable(model) == expected
    frozen_block = model.get_submodule(layout.blocks[0])
    assert not any(p.requires_grad for p in frozen_block.parameters())


def test_dropping_blocks_truncates_and_still_runs(architecture):
    import copy

    model, blocks, size = architecture
    truncated = apply_surgery(copy.deepcopy(model), 4, trainable_blocks="all", drop_blocks=1)
    assert len(truncated.backbone_cfg.layout.blocks) == blocks - 1
    assert truncated.surgery["drop_last_blocks"] == 1
    assert sum(p.numel() for p in truncated.parameters()) < sum(
        p.numel() for p in model.parameters())
    with torch.inference_mode():
        assert truncated.eval()(torch.randn(2, 3, size, size)).shape == (2, 4)


def test_too_many_dropped_blocks_is_refused(bundled_backbone):
    import copy

    with pytest.raises(ValueError, match="drop_last_blocks=7"):
        apply_surgery(copy.deepcopy(bundled_backbone), 3, drop_blocks=7)


def test_from_scratch_reinitialises_weights(fresh_backbone):
    before = fresh_backbone.conv_stem.weight.detach().clone()
    model = apply_surgery(fresh_backbone, 3, reinit=True)
    assert not torch.allclose(before, model.conv_stem.weight)
    assert model.surgery["reinitialized"] is True


def test_surgery_is_reproducible_for_a_seed(bundled_backbone):
    import copy

    first = apply_surgery(copy.deepcopy(bundled_backbone), 5, trainable_blocks=1, seed=3)
    second = apply_surgery(copy.deepcopy(bundled_backbone), 5, trainable_blocks=1, seed=3)
    assert torch.equal(first.classifier.weight, second.classifier.weight)
