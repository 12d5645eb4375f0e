"""Tests for the fine-tuning regularizers (L2, L2-SP, DELTA, BSS) and DELTA's channel attention."""

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from ft_pipelines.core.regularizers import (
    L2SP,
    REGULARIZERS,
    CompositeRegularizer,
    Regularizer,
    attention_from_frame,
    build_regularizer,
    regularizer_keys,
)
from ft_pipelines.core.regularizers.attention import (
    delta_channel_attention,
    stage_features,
    train_linear_probe,
)
from ft_pipelines.core.regularizers.bss import BSS
from ft_pipelines.core.regularizers.delta import DELTA
from ft_pipelines.core.regularizers.l2 import L2Penalty


class TinyNet(nn.Module):
    def __init__(self, num_classes: int = 5) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 4, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(4)
        self.conv2 = nn.Conv2d(4, 6, 3, padding=1)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(6, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.bn1(self.conv1(x)))
        x = torch.relu(self.conv2(x))
        return self.fc(self.pool(x).flatten(1))


@pytest.fixture
def pretrained() -> TinyNet:
    torch.manual_seed(0)
    net = TinyNet(5)
    with torch.no_grad():  # non-trivial BN statistics, so eval mode is not the identity
        net.bn1.running_mean.uniform_(-0.5, 0.5)
        net.bn1.running_var.uniform_(0.5, 2.0)
    return net.eval()


@pytest.fixture
def finetuned(pretrained: TinyNet) -> TinyNet:
    """The pretrained net with a new 3-class head (shape mismatch -> a 'new' parameter)."""
    model = copy.deepcopy(pretrained)
    torch.manual_seed(1)
    model.fc = nn.Linear(6, 3)
    return model


def images(n: int = 4, size: int = 8, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


# --------------------------------------------------------------------------- L2 / L2-SP


def test_l2_matches_hand_computation(pretrained: TinyNet) -> None:
    reg = L2Penalty(pretrained, beta=0.3)
    expected = 0.15 * sum(
        w.pow(2).sum() for w in (pretrained.conv1.weight, pretrained.conv2.weight,
                                 pretrained.fc.weight)
    )
    assert isinstance(reg, Regularizer)
    assert torch.allclose(reg.penalty(pretrained, images()), expected)
    pretrained.conv1.weight.requires_grad_(False)  # frozen kernels are not penalised
    expected -= 0.15 * pretrained.conv1.weight.pow(2).sum()
    assert torch.allclose(reg.penalty(pretrained, images()), expected)
    only_fc = L2Penalty(pretrained, beta=2.0, param_names=["fc.bias"])
    assert torch.allclose(only_fc.penalty(pretrained, images()), pretrained.fc.bias.pow(2).sum())


def test_l2_sp_zero_at_pretrained_weights_and_sorts_parameters(
    pretrained: TinyNet, finetuned: TinyNet
) -> None:
    reg = L2SP(finetuned, pretrained.state_dict(), alpha=0.1, beta=0.0)
    assert reg.penalty(finetuned, images()).item() == 0.0
    assert reg.decay_exempt() == {"conv1.weight", "conv2.weight"}
    assert reg.new_names == ["fc.weight"]
    with_head = L2SP(finetuned, pretrained.state_dict(), alpha=0.1, beta=0.02)
    expected = 0.01 * finetuned.fc.weight.pow(2).sum()
    assert torch.allclose(with_head.penalty(finetuned, images()), expected)


def test_l2_sp_equals_half_alpha_squared_distance_and_ignores_bias_and_bn(
    pretrained: TinyNet, finetuned: TinyNet
) -> None:
    reg = L2SP(finetuned, pretrained.state_dict(), alpha=0.5, beta=0.0)
    delta = torch.zeros_like(finetuned.conv2.weight)
    delta[1, 2, 0, 0], delta[4, 0, 2, 1] = 0.3, -0.4  # ||delta||^2 = 0.25
    with torch.no_grad():
        finetuned.conv2.weight += delta
        finetuned.conv2.bias += 1.0  # biases are not penalised
        finetuned.bn1.weight += 1.0  # nor BN affine (anchor_bn=False)
        finetuned.bn1.bias -= 1.0
    assert reg.penalty(finetuned, images()).item() == pytest.approx(0.25 * 0.25, rel=1e-5)
    with_bn = L2SP(finetuned, pretrained.state_dict(), alpha=0.5, beta=0.0, anchor_bn=True)
    # bn1 weight and bias moved by 1 on each of 4 channels -> 8 more squared units
    assert with_bn.penalty(finetuned, images()).item() == pytest.approx(0.25 * (0.25 + 8),
                                                                        rel=1e-5)
    assert {"bn1.weight", "bn1.bias"} <= with_bn.decay_exempt()


def test_l2_sp_anchor_is_not_moved_by_training(pretrained: TinyNet) -> None:
    model = copy.deepcopy(pretrained)
    original = model.conv2.weight.detach().clone()
    reg = L2SP(model, model.state_dict(), alpha=0.1, beta=0.01)  # anchor shares storage
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    loss = F.cross_entropy(model(images()), torch.tensor([0, 1, 2, 3]))
    (loss + reg.penalty(model, images())).backward()
    optimizer.step()
    assert not torch.equal(model.conv2.weight, original)
    assert torch.equal(reg.anchor["conv2.weight"], original)
    moved = (model.conv2.weight - original).pow(2).sum() + (
        model.conv1.weight - reg.anchor["conv1.weight"]).pow(2).sum() + (
        model.fc.weight - reg.anchor["fc.weight"]).pow(2).sum()
    assert reg.penalty(model, images()).item() == pytest.approx(0.05 * moved.item(), rel=1e-5)


def test_l2_sp_channel_strength_scales_each_output_channel(
    pretrained: TinyNet, finetuned: TinyNet
) -> None:
    strength = torch.tensor([0.0, 1.0, 2.0, 3.0, 4.0, 5.0])
    reg = L2SP(finetuned, pretrained.state_dict(), alpha=1.0, beta=0.0,
               channel_strength={"conv2.weight": strength})
    with torch.no_grad():
        finetuned.conv2.weight[0] += 1.0  # strength 0: ignored
        finetuned.conv2.weight[3, 0, 0, 0] += 0.5  # strength 3: 3 * 0.25
    assert reg.penalty(finetuned, images()).item() == pytest.approx(0.5 * 0.75, rel=1e-5)
    with pytest.raises(ValueError, match="output channels"):
        L2SP(finetuned, pretrained.state_dict(), channel_strength={"conv2.weight": strength[:4]})


# --------------------------------------------------------------------------- DELTA


def test_delta_zero_for_identical_model_and_positive_after_perturbation(
    pretrained: TinyNet,
) -> None:
    model = copy.deepcopy(pretrained).eval()
    reg = DELTA(pretrained, ["bn1", "conv2"], attention=None, alpha=0.01, beta=0.01)
    reg.attach(model)
    assert reg.new_names == [] and reg.decay_exempt() == {
        "conv1.weight", "conv2.weight", "fc.weight"}
    x = images()
    model(x)
    assert reg.penalty(model, x).item() == 0.0
    with torch.no_grad():
        model.conv1.weight[2] += 0.5
    model(x)
    value = reg.penalty(model, x)
    assert value.item() > 0
    value.backward()
    assert model.conv1.weight.grad is not None and model.conv1.weight.grad.abs().sum() > 0
    # the caller's reference stays untouched; the private copy is frozen
    assert all(p.requires_grad for p in pretrained.parameters())
    assert not any(p.requires_grad for p in reg.reference.parameters())
    reg.detach()
    assert not model.bn1._forward_hooks and not model.conv2._forward_hooks


def test_delta_matches_hand_computation_with_attention(
    pretrained: TinyNet, finetuned: TinyNet
) -> None:
    attention = {"bn1": torch.tensor([0.1, 0.2, 0.3, 0.4]),
                 "conv2": torch.tensor([0.5, 0.0, 0.1, 0.1, 0.2, 0.1])}
    reg = DELTA(pretrained, ["bn1", "conv2"], attention, alpha=0.7, beta=0.2)
    reg.attach(finetuned)
    assert reg.new_names == ["fc.weight"]
    with torch.no_grad():
        finetuned.conv1.weight.mul_(1.3)
        finetuned.conv2.weight.add_(0.05)
    finetuned.train()  # batch statistics in the model, running statistics in the reference
    x = images(n=5)
    finetuned(x)
    value = reg.penalty(finetuned, x)

    def maps(net: TinyNet, train: bool) -> tuple[torch.Tensor, torch.Tensor]:
        net.train(train)
        bn = net.bn1(net.conv1(x))
        return bn, net.conv2(torch.relu(bn))

    with torch.no_grad():
        fm = maps(copy.deepcopy(finetuned), True)
        fm0 = maps(pretrained, False)
    per_sample = torch.zeros(5)
    for a, b, weights in zip(fm, fm0, attention.values(), strict=True):
        for c in range(a.shape[1]):
            per_sample += weights[c] * (a[:, c] - b[:, c]).pow(2).mean(dim=(1, 2))
    expected = 0.7 * per_sample.mean() + 0.1 * finetuned.fc.weight.pow(2).sum()
    assert value.item() == pytest.approx(expected.item(), rel=1e-5)


def test_delta_precomputed_reference_maps_give_same_value(
    pretrained: TinyNet, finetuned: TinyNet
) -> None:
    reg = DELTA(pretrained, ["conv2"], None)
    reg.attach(finetuned)
    x = images()
    finetuned(x)
    direct = reg.penalty(finetuned, x)
    precomputed = DELTA(pretrained, ["conv2"], None).compute_reference_maps(x)
    given = reg.penalty(finetuned, x, reference_maps=precomputed)
    assert direct.item() == pytest.approx(given.item(), rel=1e-6)
    assert direct.item() > 0  # maps are equal here; the new head's beta term remains
    finetuned(images(n=3, seed=5))
    with pytest.raises(RuntimeError, match="batch size"):
        reg.penalty(finetuned, x)


def test_delta_rejects_unknown_layer_and_bad_attention(pretrained: TinyNet) -> None:
    with pytest.raises(ValueError, match="no module named 'layer9'"):
        DELTA(pretrained, ["layer9"], None)
    with pytest.raises(ValueError, match="no weights for layer"):
        DELTA(pretrained, ["conv2"], {"bn1": torch.ones(4)})


# --------------------------------------------------------------------------- BSS


def test_bss_equals_eta_times_smallest_singular_values_squared() -> None:
    model = nn.Sequential(nn.Identity(), nn.Linear(3, 2))
    # singular values 3, 2, 0.5 (rows are scaled unit vectors)
    features = torch.tensor([[3.0, 0, 0], [0, 2.0, 0], [0, 0, 0.5], [0, 0, 0]],
                            requires_grad=True)
    reg = BSS(eta=0.01, k=1, feature_module="1")
    reg.attach(model)
    model(features)
    value = reg.penalty(model, features)
    assert value.item() == pytest.approx(0.01 * 0.25, rel=1e-5)
    value.backward()
    assert features.grad[2, 2].item() == pytest.approx(0.01 * 2 * 0.5, rel=1e-4)
    two = BSS(eta=0.01, k=2, feature_module="1")
    two.attach(model)
    model(features)
    assert two.penalty(model, features).item() == pytest.approx(0.01 * (4 + 0.25), rel=1e-5)
    two.detach()
    reg.detach()
    assert not model[1]._forward_pre_hooks


# --------------------------------------------------------------------------- factory


def test_build_regularizer_rejects_unknown_name_naming_the_parameter(finetuned: TinyNet) -> None:
    with pytest.raises(ValueError, match=r"finetune\.regularizer\.name") as info:
        build_regularizer("l3_sp", finetuned)
    assert "l2_sp" in str(info.value) and "delta" in str(info.value)
    with pytest.raises(ValueError, match="alpah"):
        build_regularizer("l2_sp", finetuned, finetuned, {"alpah": 0.1})
    with pytest.raises(ValueError, match="anchor_model"):
        build_regularizer("delta", finetuned, None, {"layer_names": ["conv2"]})


def test_build_regularizer_composes_l2_sp_and_bss(pretrained: TinyNet, finetuned: TinyNet) -> None:
    params = {"name": "l2_sp", "alpha": 0.2, "beta": 0.1, "bss": {"eta": 0.5, "k": 1}}
    reg = build_regularizer("l2_sp", finetuned, pretrained, params)
    assert isinstance(reg, CompositeRegularizer) and reg.name == "l2_sp+bss"
    assert not reg.needs_inputs  # cached frozen-prefix activations are fine for these two
    delta = build_regularizer("delta", finetuned, pretrained, {"layer_names": ["conv2"]})
    assert delta.needs_inputs  # DELTA runs the reference on the real images
    reg.attach(finetuned)
    with torch.no_grad():
        finetuned.conv1.weight.add_(0.1)
    x = images()
    finetuned(x)
    terms = reg.penalty_terms(finetuned, x)
    l2_sp = L2SP(finetuned, pretrained.state_dict(), alpha=0.2, beta=0.1)
    assert terms["l2_sp"].item() == pytest.approx(l2_sp.penalty(finetuned, x).item(), rel=1e-6)
    assert terms["bss"].item() > 0
    assert reg.penalty(finetuned, x).item() == pytest.approx(
        terms["l2_sp"].item() + terms["bss"].item(), rel=1e-6)
    assert reg.decay_exempt() == {"conv1.weight", "conv2.weight"}
    none = build_regularizer("none", finetuned)
    assert none.name == "none" and none.penalty(finetuned, x).item() == 0.0


# --------------------------------------------------------------------------- DELTA attention


def _channel_dependent_problem() -> tuple[list[nn.Module], torch.Tensor, torch.Tensor]:
    """Labels depend only on channel 2 of a 4-channel input; stage 0 is the identity."""
    x = torch.randn(120, 4, 3, 3, generator=torch.Generator().manual_seed(3))
    labels = (x[:, 2].mean(dim=(1, 2)) > 0).long()
    stages = [nn.Identity(), nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())]
    return stages, x, labels


def test_attention_weights_sum_to_one_and_favour_the_channel_the_probe_needs() -> None:
    stages, x, labels = _channel_dependent_problem()
    features = stage_features(stages, x, batch_size=50)
    probe = train_linear_probe(features, labels, num_classes=2, epochs=50)
    assert (probe(features).argmax(1) == labels).float().mean() > 0.95
    frame = delta_channel_attention(stages, [0, 1], ["identity", "pooled"], probe, x, labels,
                                    ablations_per_forward=3, batch_size=50)
    assert list(frame.columns) == ["layer", "channel", "loss_increase", "weight"]
    for _, rows in frame.groupby("layer"):
        assert rows["weight"].sum() == pytest.approx(1.0, abs=1e-9)
        assert rows.loc[rows["weight"].idxmax(), "channel"] == 2
        assert rows.loc[rows["loss_increase"].idxmax(), "channel"] == 2
    pooled = frame[frame["layer"] == "pooled"]
    increase = torch.tensor(pooled["loss_increase"].to_numpy())
    z = (increase - increase.mean()) / increase.std(unbiased=False)
    assert torch.allclose(torch.tensor(pooled["weight"].to_numpy()), torch.softmax(z / 5, 0))
    attention = attention_from_frame(frame)
    assert attention["identity"].shape == (4,) and attention["identity"].argmax() == 2


def test_batched_ablation_equals_one_at_a_time_and_a_manual_ablation(pretrained: TinyNet) -> None:
    net = pretrained
    stages = [nn.Sequential(net.conv1, net.bn1, nn.ReLU()),
              nn.Sequential(net.conv2, nn.ReLU(), net.pool, nn.Flatten())]
    x, labels = images(n=10, seed=7), torch.arange(10) % 5
    probe = net.fc
    kwargs = {"batch_size": 4}
    one = delta_channel_attention(stages, [0], ["block"], probe, x, labels,
                                  ablations_per_forward=1, **kwargs)
    batched = delta_channel_attention(stages, [0], ["block"], probe, x, labels,
                                      ablations_per_forward=3, **kwargs)
    assert torch.allclose(torch.tensor(one["loss_increase"].to_numpy()),
                          torch.tensor(batched["loss_increase"].to_numpy()), atol=1e-6)
    with torch.no_grad():
        activation = stages[0](x)
        base = F.cross_entropy(probe(stages[1](activation)), labels)
        activation[:, 1] = 0
        manual = F.cross_entropy(probe(stages[1](activation)), labels) - base
    assert batched.loc[1, "loss_increase"] == pytest.approx(manual.item(), abs=1e-5)
    # every submodule's own mode is restored (train() on a wrapper would flip bn1)
    assert not net.bn1.training and stages[0].training and probe.weight.requires_grad


def test_train_linear_probe_rejects_bad_labels() -> None:
    with pytest.raises(ValueError, match="num_classes"):
        train_linear_probe(torch.randn(4, 3), torch.tensor([0, 1, 2, 3]), num_classes=3)


def test_finetune_treats_the_new_head_as_new_not_anchored(bundled_backbone):
    import copy

    from ft_pipelines.core.data import ImageData
    from ft_pipelines.core.models import apply_surgery
    from ft_pipelines.core.training import finetune_model

    model = apply_surgery(copy.deepcopy(bundled_backbone), 3, trainable_blocks=1)
    images = torch.randint(0, 255, (12, 3, 64, 64), dtype=torch.uint8)
    data = ImageData(images, torch.arange(12) % 3)
    plan = {"epochs": 1, "learning_rates": {"pretrained": 1e-9, "new": 1e-9},
            "regularizer": {"name": "l2_sp", "alpha": 0.0, "beta": 1.0}}
    head = model.classifier.weight.detach().clone()
    _, history = finetune_model(model, {"train": data, "val": data}, plan,
                                {"batch_size": 12, "progress": False})
    # alpha 0: only beta/2 * ||w_new||^2 remains, and it is evaluated at the head's weights
    expected = 0.5 * (head.pow(2).sum())
    assert history["reg_term"].iloc[0] == pytest.approx(float(expected), rel=1e-3)


# A value for every key a regulariser's settings may hold (the parameter schema's fields).
_SETTING_VALUES = {"alpha": 0.01, "beta": 0.01, "anchor_bn": True, "layer_names": ["conv2"],
                   "new_param_names": ["fc.weight"], "cached_reference": False}


@pytest.mark.parametrize("name", sorted(REGULARIZERS))
def test_every_key_the_schema_accepts_is_accepted_by_the_builder(
    name: str, pretrained: TinyNet, finetuned: TinyNet
) -> None:
    """The schema and the builders share one key list; a key the schema let through used to
    fail at fine-tuning (delta's cached_reference), after the upstream stages had run."""
    from ft_pipelines.core.regularizers import RegularizerSettings

    settings = {key: _SETTING_VALUES[key] for key in regularizer_keys(name)}
    validated = RegularizerSettings(name=name, **settings).model_dump(exclude_none=True)
    built = build_regularizer(name, finetuned, pretrained, validated)
    assert built.name == name  # "none" builds the zero penalty named none
    built.attach(finetuned)
    finetuned(images())  # DELTA compares the feature maps of this forward pass
    assert torch.isfinite(built.penalty(finetuned, images()))


def test_delta_without_a_cached_reference_runs_the_reference_per_batch(
    pretrained: TinyNet, finetuned: TinyNet
) -> None:
    reg = DELTA(pretrained, ["conv2"], None, cached_reference=False)
    assert reg.precompute_reference(images()) is False and reg.needs_inputs
    assert DELTA(pretrained, ["conv2"], None).precompute_reference(images()) is True
