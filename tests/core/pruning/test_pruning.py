"""Tests for structural pruning with the project's importance tables."""

from __future__ import annotations

import pytest
import timm
import torch
import torch.nn.functional as F
from torch import nn

from ft_pipelines.core.models.artifact import channel_counts
from ft_pipelines.core.pruning import (
    channel_groups,
    importance_table,
    l1_scores,
    prunable_bn_layers,
    prune_by_importance,
)
from ft_pipelines.core.pruning.baselines import random_scores
from ft_pipelines.core.pruning.gates import ChannelGates, taylor_scores
from ft_pipelines.core.utils import count_macs_params
from tests.core.pruning.test_importance import TinyResNet, make_batches, randomize_bn


def table_for(model: nn.Module, scores: dict, x: torch.Tensor, ignored: list) -> object:
    groups = channel_groups(model, x, list(scores), ignored)
    return importance_table(scores, None, groups)


def lite0() -> nn.Module:
    torch.manual_seed(0)
    return timm.create_model("efficientnet_lite0", pretrained=False, num_classes=10).eval()


def test_prunable_bn_layers_honours_ignored_prefixes() -> None:
    model = lite0()
    names = prunable_bn_layers(model, ignored=["blocks.6", "bn2"])
    assert "bn1" in names and "blocks.5.0.bn1" in names
    assert not any(name.startswith("blocks.6.") or name == "bn2" for name in names)
    with pytest.raises(ValueError, match="blocks.99"):
        prunable_bn_layers(model, ignored=["blocks.99"])


def test_residual_group_pruned_together_on_tiny_resnet() -> None:
    model = randomize_bn(TinyResNet()).eval()
    x = torch.randn(2, 3, 16, 16)
    table = table_for(model, random_scores(model, seed=0), x, [model.fc])
    summary = prune_by_importance(model, table, x, ratio=0.4, ignored_layers=[model.fc])
    assert model.stem_bn.num_features == model.bn2.num_features < 8
    assert model.bn1.num_features < 16
    removed = summary["removed_channels"]
    assert removed["stem_bn"] == removed["bn2"]
    assert summary["layers"]["stem_bn"] == [8, model.stem_bn.num_features]
    assert model(x).shape == (2, 10)
    assert model.fc.out_features == 10
    assert summary["params_after"] < summary["params_before"]
    assert summary["macs_after"] < summary["macs_before"]
    assert (summary["macs_after"], summary["params_after"]) == count_macs_params(model, x)


def test_lowest_ranked_channels_are_removed_first() -> None:
    model = TinyResNet().eval()
    x = torch.randn(1, 3, 16, 16)
    scores = {name: torch.linspace(1.0, 2.0, n) for name, n in (("stem_bn", 8), ("bn1", 16))}
    scores["bn2"] = torch.linspace(1.0, 2.0, 8)
    for name, channel in (("stem_bn", 5), ("bn2", 5), ("bn1", 2), ("bn1", 9)):
        scores[name][channel] = 1e-3  # clearly the least important: 3 groups
    table = table_for(model, scores, x, [model.fc])
    lowest = table.sort_values("global_rank").head(4)
    expected = {("stem_bn", 5), ("bn2", 5), ("bn1", 2), ("bn1", 9)}
    assert set(zip(lowest.layer, lowest.channel, strict=True)) == expected
    # 24 prunable channel groups (8 residual + 16): remove exactly 3 of them
    summary = prune_by_importance(model, table, x, ratio=3 / 24)
    assert summary["removed_channels"] == {"stem_bn": [5], "bn1": [2, 9], "bn2": [5]}
    assert model.fc.out_features == 10  # not ignored explicitly: unscored, so never pruned


def test_taylor_pruning_on_efficientnet_lite0() -> None:
    model = lite0()
    x = torch.randn(1, 3, 32, 32)
    with ChannelGates(model) as gates:
        scores = taylor_scores(model, gates, make_batches(2, 10, size=32), "cpu")
    pair = ("blocks.2.0.bn3", "blocks.2.1.bn3")
    for name in pair:
        scores[name][[3, 17]] = 0.0  # useless in both members of the residual group
    table = table_for(model, scores, x, [model.classifier])
    summary = prune_by_importance(model, table, x, ratio=0.3, ignored_layers=[model.classifier])
    removed = summary["removed_channels"]
    assert {3, 17} <= set(removed[pair[0]])
    assert removed[pair[0]] == removed[pair[1]]
    assert summary["layers"][pair[0]] == summary["layers"][pair[1]]
    assert summary["macs_after"] < summary["macs_before"]
    assert summary["params_after"] < summary["params_before"]
    assert model.classifier.out_features == 10
    assert model(torch.randn(2, 3, 64, 64)).shape == (2, 10)
    assert not model.training  # mode preserved through tracing


def test_macs_target_with_two_steps_calls_recover() -> None:
    model = lite0().train()
    x = torch.randn(1, 3, 32, 32)
    table = table_for(model, l1_scores(model), x, [model.classifier])
    calls = []

    def recover(pruned: nn.Module, step: int) -> None:
        # pruning made new Parameter objects: a fresh optimizer must see the new shapes
        optimizer = torch.optim.SGD(pruned.parameters(), lr=0.01)
        images, labels = make_batches(1, 10, size=32)[0]
        F.cross_entropy(pruned(images), labels).backward()
        optimizer.step()
        calls.append(step)

    summary = prune_by_importance(
        model,
        table,
        x,
        ratio=0.3,
        target="macs",
        steps=2,
        recover=recover,
        ignored_layers=[model.classifier],
    )
    assert calls == [0, 1]
    assert summary["macs_after"] <= 0.72 * summary["macs_before"]
    assert 0 < summary["channel_ratio"] < 0.95
    assert model.training


def test_channel_counts_match_pruned_shapes() -> None:
    model = randomize_bn(TinyResNet()).eval()
    x = torch.randn(1, 3, 16, 16)
    prune_by_importance(model, table_for(model, l1_scores(model), x, []), x, ratio=0.3)
    config = channel_counts(model)
    assert config["conv1"] == [model.stem_bn.num_features, model.bn1.num_features, 1]
    assert config["bn2"] == [model.bn2.num_features]
    assert config["fc"] == [model.bn2.num_features, 10]


def test_bad_arguments_raise_value_error() -> None:
    model = TinyResNet().eval()
    x = torch.randn(1, 3, 16, 16)
    table = table_for(model, random_scores(model), x, [])
    with pytest.raises(ValueError, match="ratio"):
        prune_by_importance(model, table, x, ratio=1.5)
    with pytest.raises(ValueError, match="target"):
        prune_by_importance(model, table, x, ratio=0.2, target="flops")
    with ChannelGates(model), pytest.raises(ValueError, match="remove"):
        prune_by_importance(model, table, x, ratio=0.2)
    with pytest.raises(ValueError, match="recompute the table"):
        prune_by_importance(TinyResNet(n_classes=3), table[table.channel < 4], x, ratio=0.2)


def collapsing_table(model: nn.Module, x: torch.Tensor, weakest: tuple[str, ...]) -> object:
    """An importance table whose ``weakest`` layers rank below every other channel, so a global
    ranking takes them first (set on ``norm_score``: the table normalises raw scores per layer)."""
    scores = {name: torch.linspace(1.0, 2.0, n) for name, n in
              (("stem_bn", 8), ("bn1", 16), ("bn2", 8))}
    table = table_for(model, scores, x, [model.fc])
    weak = table["layer"].isin(weakest)
    table.loc[weak, "norm_score"] = 1e-3 * (1 + table.loc[weak, "channel"])
    return table


def test_global_ranking_would_empty_the_classifier_input_but_the_floor_holds() -> None:
    x = torch.randn(1, 3, 16, 16)
    unguarded = TinyResNet(n_classes=6).eval()
    table = collapsing_table(unguarded, x, ("stem_bn", "bn2"))
    # 24 channel groups: removing 7 takes all but the one pinned channel of the residual group
    prune_by_importance(unguarded, table, x, ratio=7 / 24)
    assert unguarded.stem_bn.num_features == 1
    guarded = TinyResNet(n_classes=6).eval()
    summary = prune_by_importance(guarded, table, x, ratio=7 / 24, feature_floor=6)
    assert guarded.stem_bn.num_features == guarded.bn2.num_features == 6
    assert guarded.bn1.num_features == 16 - 5  # the rest of the budget comes from bn1
    assert summary["feature_floor"] == 6
    assert guarded(x).shape == (1, 6)


def test_max_layer_ratio_caps_every_layer_within_one_step() -> None:
    x = torch.randn(1, 3, 16, 16)
    model = TinyResNet().eval()
    table = collapsing_table(model, x, ("bn1",))
    # 24 groups, 12 kept by the floors: removing 9 would take 15 of bn1 without the cap
    prune_by_importance(model, table, x, ratio=9 / 24, max_layer_ratio=0.5)
    assert model.bn1.num_features == 8 and model.stem_bn.num_features == 8 - 1
    with pytest.raises(ValueError, match="max_layer_ratio"):
        prune_by_importance(TinyResNet().eval(), table, x, ratio=0.6, max_layer_ratio=0.5)


def test_round_to_keeps_multiples_and_the_macs_target_on_lite0() -> None:
    model = lite0()
    x = torch.randn(1, 3, 32, 32)
    table = table_for(model, l1_scores(model), x, [model.classifier])
    summary = prune_by_importance(model, table, x, ratio=0.35, target="macs", round_to=8,
                                  max_layer_ratio=0.75, feature_floor=10,
                                  ignored_layers=[model.classifier])
    changed = {n: c for n, c in summary["layers"].items() if c[0] != c[1]}
    assert len(changed) > 10
    assert all(after % 8 == 0 and after >= before // 4 for before, after in changed.values())
    assert summary["macs_after"] <= 0.65 * summary["macs_before"] + 1
    assert summary["macs_after"] >= 0.60 * summary["macs_before"]  # hit, not overshot
    assert model.bn2.num_features >= 16  # feature floor 10, rounded up to 8
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_floors_round_up_and_never_exceed_the_layer() -> None:
    from ft_pipelines.core.pruning.structural import channel_floors

    model = TinyResNet(n_classes=3).eval()
    x = torch.randn(1, 3, 16, 16)
    floors = channel_floors(model, x, [model.stem_bn, model.bn1, model.bn2], max_layer_ratio=0.75,
                            round_to=8, feature_floor=3)
    # bn1: 16 * 0.25 = 4 -> 8; stem_bn/bn2 feed fc: max(2, 3) -> 8 = their own count
    assert floors == {model.stem_bn: 8, model.bn1: 8, model.bn2: 8}
    floors = channel_floors(model, x, [model.bn1], max_layer_ratio=0.75, round_to=32)
    assert floors == {model.bn1: 16}  # fewer channels than round_to: never pruned
