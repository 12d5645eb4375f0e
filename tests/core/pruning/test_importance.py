"""Tests for target-aware channel importance (gates, Taylor scores, groups, tables)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import timm
import torch
import torch.nn.functional as F
from timm.layers import BatchNormAct2d
from torch import nn

from ft_pipelines.core.pruning import channel_groups, importance_table, l1_scores
from ft_pipelines.core.pruning.baselines import random_scores
from ft_pipelines.core.pruning.gates import ChannelGates, taylor_scores, train_gates

TABLE_COLUMNS = [
    "layer",
    "channel",
    "group",
    "scale",
    "raw_score",
    "norm_score",
    "group_score",
    "global_rank",
]


class TinyNet(nn.Module):
    """conv -> BN -> relu -> pool -> linear."""

    def __init__(self, n_classes: int = 3) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.fc = nn.Linear(4, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn(self.conv(x)))
        return self.fc(F.adaptive_avg_pool2d(x, 1).flatten(1))


class TinyResNet(nn.Module):
    """stem (conv-bn-relu) + one residual block (conv-bn-relu-conv-bn, add) + linear head."""

    def __init__(self, n_classes: int = 10) -> None:
        super().__init__()
        self.stem_conv = nn.Conv2d(3, 8, 3, padding=1, bias=False)
        self.stem_bn = nn.BatchNorm2d(8)
        self.conv1 = nn.Conv2d(8, 16, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.conv2 = nn.Conv2d(16, 8, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(8)
        self.fc = nn.Linear(8, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.stem_bn(self.stem_conv(x)))
        y = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        x = F.relu(x + y)
        return self.fc(F.adaptive_avg_pool2d(x, 1).flatten(1))


def randomize_bn(model: nn.Module, seed: int = 0) -> nn.Module:
    """Non-trivial BN statistics and affine parameters, so scores differ per channel."""
    generator = torch.Generator().manual_seed(seed)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            n = module.num_features
            module.running_mean.copy_(torch.randn(n, generator=generator) * 0.1)
            module.running_var.copy_(torch.rand(n, generator=generator) + 0.5)
            module.weight.data.copy_(torch.rand(n, generator=generator) + 0.5)
            module.bias.data.copy_(torch.randn(n, generator=generator) * 0.1)
    return model


def make_batches(n_batches: int, n_classes: int, size: int = 16, seed: int = 0) -> list:
    generator = torch.Generator().manual_seed(seed)
    return [
        (
            torch.randn(4, 3, size, size, generator=generator),
            torch.randint(0, n_classes, (4,), generator=generator),
        )
        for _ in range(n_batches)
    ]


def hand_taylor(model: TinyNet, alpha: torch.Tensor, batch: tuple) -> torch.Tensor:
    """|alpha * dL/dalpha| with the gate written into the forward pass explicitly."""
    inputs, targets = batch
    gate = alpha.clone().requires_grad_(True)
    model.eval()
    z = model.bn(model.conv(inputs)) * gate.view(1, -1, 1, 1)
    logits = model.fc(F.adaptive_avg_pool2d(F.relu(z), 1).flatten(1))
    (grad,) = torch.autograd.grad(F.cross_entropy(logits, targets), gate)
    return (gate.detach() * grad).abs()


def test_taylor_score_matches_hand_computation_and_averages_batches() -> None:
    torch.manual_seed(0)
    model = randomize_bn(TinyNet())
    batches = make_batches(2, n_classes=3)
    alpha = torch.tensor([0.5, 1.5, -0.7, 1.2])
    with ChannelGates(model) as gates:
        next(gates.parameters()).data.copy_(alpha)
        one = taylor_scores(model, gates, batches[:1], "cpu")["bn"]
        both = taylor_scores(model, gates, batches, "cpu")["bn"]
    per_batch = [hand_taylor(model, alpha, batch) for batch in batches]
    torch.testing.assert_close(one, per_batch[0])
    torch.testing.assert_close(both, (per_batch[0] + per_batch[1]) / 2)
    # the two batches differ, so the average is not just the last batch's score
    assert not torch.allclose(both, per_batch[1])


def test_train_gates_changes_gates_only() -> None:
    torch.manual_seed(0)
    model = randomize_bn(TinyResNet(n_classes=3)).train()
    model.fc.bias.requires_grad_(False)  # mixed flags must come back as they were
    flags = {name: p.requires_grad for name, p in model.named_parameters()}
    before = {key: value.clone() for key, value in model.state_dict().items()}
    batches = make_batches(3, n_classes=3)
    with ChannelGates(model) as gates:
        losses = train_gates(model, gates, batches, epochs=4, lr=0.05, device="cpu")
        scales = gates.scales()
    assert len(losses) == 4
    assert losses[-1] < losses[0]
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), key  # weights and BN running stats
    assert {name: p.requires_grad for name, p in model.named_parameters()} == flags
    assert model.training and model.bn1.training
    assert set(scales) == {"stem_bn", "bn1", "bn2"}
    assert any(not torch.allclose(s, torch.ones_like(s)) for s in scales.values())


def test_gates_multiply_after_bn_act_and_remove_restores() -> None:
    layer = nn.Sequential(nn.Conv2d(3, 4, 1), BatchNormAct2d(4, act_layer=nn.ReLU)).eval()
    x = torch.randn(2, 3, 8, 8)
    plain = layer(x)
    gates = ChannelGates(layer)
    assert gates.layer_names == ["1"]
    next(gates.parameters()).data.fill_(-1.0)
    # the gate sits after the activation: relu output (>= 0) times -1
    torch.testing.assert_close(layer(x), -plain)
    gates.remove()
    torch.testing.assert_close(layer(x), plain)


def test_gates_reject_unknown_layer() -> None:
    with pytest.raises(ValueError, match="fc"):
        ChannelGates(TinyNet(), layer_names=["fc"])


def test_channel_groups_residual_pair_shares_ids() -> None:
    model = TinyResNet()
    x = torch.randn(1, 3, 16, 16)
    names = ["stem_bn", "bn1", "bn2"]
    groups = channel_groups(model, x, names, ignored_layers=[model.fc])
    np.testing.assert_array_equal(groups["stem_bn"], groups["bn2"])
    assert len(set(groups["stem_bn"])) == 8
    assert not set(groups["bn1"]) & set(groups["stem_bn"])
    assert all((ids >= 0).all() for ids in groups.values())
    ignored = channel_groups(model, x, names, ignored_layers=[model.fc, model.conv1])
    assert (ignored["bn1"] == -1).all()
    assert (ignored["bn2"] >= 0).all()


def test_channel_groups_efficientnet_depthwise_and_residual() -> None:
    model = timm.create_model("efficientnet_lite0", pretrained=False, num_classes=10)
    groups = channel_groups(
        model,
        torch.randn(1, 3, 32, 32),
        ["blocks.1.0.bn1", "blocks.1.0.bn2", "blocks.2.0.bn3", "blocks.2.1.bn3"],
        ignored_layers=[model.classifier],
    )
    # depthwise conv couples the expansion BN and the depthwise BN channel by channel
    np.testing.assert_array_equal(groups["blocks.1.0.bn1"], groups["blocks.1.0.bn2"])
    # residual add couples the projection BNs of consecutive blocks of a stage
    np.testing.assert_array_equal(groups["blocks.2.0.bn3"], groups["blocks.2.1.bn3"])
    assert not set(groups["blocks.1.0.bn1"]) & set(groups["blocks.2.0.bn3"])


def residual_table(scores: dict[str, torch.Tensor]) -> pd.DataFrame:
    model = TinyResNet()
    groups = channel_groups(model, torch.randn(1, 3, 16, 16), list(scores), [model.fc])
    return importance_table(scores, None, groups)


def test_importance_table_normalises_sums_and_ranks() -> None:
    scores = random_scores(TinyResNet(), ["stem_bn", "bn1", "bn2"], seed=3)
    table = residual_table(scores)
    assert list(table.columns) == TABLE_COLUMNS
    assert len(table) == 8 + 16 + 8
    for _, rows in table.groupby("layer"):
        assert np.linalg.norm(rows["norm_score"]) == pytest.approx(1.0)
    stem = table[table.layer == "stem_bn"].set_index("channel")
    bn2 = table[table.layer == "bn2"].set_index("channel")
    np.testing.assert_allclose(stem.group_score, stem.norm_score + bn2.norm_score)
    ranks = table["global_rank"].to_numpy(dtype=int)
    assert sorted(ranks) == list(range(len(table)))
    ordered = table.sort_values("global_rank")["group_score"].to_numpy()
    assert (np.diff(ordered) >= 0).all()
    assert table["scale"].isna().all()


def test_importance_table_marks_unprunable_channels() -> None:
    scores = {"a": torch.tensor([3.0, 4.0]), "b": torch.tensor([1.0, 2.0])}
    groups = {"a": np.array([-1, -1]), "b": np.array([0, 1])}
    scales = {"a": torch.tensor([0.9, 1.1]), "b": torch.tensor([1.0, 1.0])}
    table = importance_table(scores, scales, groups)
    a_rows = table[table.layer == "a"]
    np.testing.assert_allclose(a_rows.norm_score, [0.6, 0.8])
    assert a_rows.global_rank.isna().all()
    np.testing.assert_allclose(a_rows.scale, [0.9, 1.1])
    assert table[table.layer == "b"].global_rank.tolist() == [0, 1]


def test_baseline_tables_have_same_shape() -> None:
    model = randomize_bn(TinyResNet())
    names = ["stem_bn", "bn1", "bn2"]
    l1 = l1_scores(model, names)
    expected = model.conv1.weight.detach().abs().sum(dim=(1, 2, 3))
    torch.testing.assert_close(l1["bn1"], expected)
    rand = random_scores(model, names, seed=1)
    torch.testing.assert_close(rand["bn1"], random_scores(model, names, seed=1)["bn1"])
    assert not torch.equal(rand["bn1"], random_scores(model, names, seed=2)["bn1"])
    with ChannelGates(model) as gates:
        taylor = taylor_scores(model, gates, make_batches(1, n_classes=10), "cpu")
    tables = [residual_table(scores) for scores in (l1, rand, taylor)]
    for table in tables:
        assert list(table.columns) == TABLE_COLUMNS
        assert table[["layer", "channel", "group"]].equals(tables[0][["layer", "channel", "group"]])
