"""``pruning.ratio: auto``: the iterative search stops at the accuracy budget and ships the most
compressed step within it; every step is recorded; several ranks follow rank 0's measurements."""

from __future__ import annotations

import copy
import dataclasses
import math

import pytest
import torch
import torch.distributed as dist

from ft_pipelines.core.data import ImageData
from ft_pipelines.core.evaluation.report import frontier_lines
from ft_pipelines.core.models import load_model_file, replace_head, save_model_file
from ft_pipelines.core.pruning import l1_scores, prune_and_finetune
from ft_pipelines.core.pruning import transtailor as transtailor_module
from ft_pipelines.core.pruning.frontier import (
    SearchSettings,
    StepOutcome,
    frontier_figure,
    frontier_search,
    input_size_search,
    input_sizes,
    surviving_table,
    to_original,
)
from ft_pipelines.core.pruning.structural import PruningLimitReached
from ft_pipelines.core.training import world
from ft_pipelines.core.training.distributed import spawn_data_parallel
from tests.conftest import MULTI_PROCESS, SLOW
from tests.core.pruning.test_back_off import tiny_splits
from tests.core.pruning.test_pruning import table_for
from tests.core.training.tiny import UNGUARDED_PRUNING


def fake_step(accuracy_of_step: dict[int, float], calls: list):
    """A step that multiplies the remaining cost by (1 - share); accuracy by the step index."""

    def step(current, index, share):
        calls.append((current, index, round(share, 4)))
        cost = current[1] * (1 - share)
        return StepOutcome((f"model{index}", cost), accuracy_of_step[index], cost)

    return step


def settings(**changes) -> SearchSettings:
    return SearchSettings(**{"share": 0.5, "max_ratio": 0.99, "max_drop_points": 1.0,
                             "max_attempts": 2, **changes})


def test_search_stops_at_the_first_step_over_budget_and_ships_the_one_before():
    calls = []
    step = fake_step({1: 0.95, 2: 0.945, 3: 0.942, 4: 0.90, 5: 0.95}, calls)
    kept, records, accepted = frontier_search(step, ("start", 1.0), 0.95, settings())
    assert [c[1] for c in calls] == [1, 2, 3, 4]  # never tried step 5
    assert kept == ("model3", pytest.approx(0.125)) and accepted
    assert [r["kept"] for r in records] == [False, False, True, False]
    assert [r["within_limit"] for r in records] == [True, True, True, False]
    assert calls[1][0][0] == "model1" and calls[2][0][0] == "model2"  # each from the last


def test_search_stops_at_the_floor_without_passing_it():
    calls = []
    step = fake_step(dict.fromkeys(range(1, 10), 0.95), calls)
    kept, records, _ = frontier_search(step, ("start", 1.0), 0.95, settings(max_ratio=0.8))
    # 0.5, 0.25, then the share is cut to reach 0.2 exactly, then nothing is left to remove
    assert [c[2] for c in calls] == [0.5, 0.5, 0.2]
    assert records[-1]["cost_fraction"] == pytest.approx(0.2) and records[-1]["kept"]


def test_first_step_over_budget_is_retried_gentler_then_flagged():
    calls = []
    step = fake_step({1: 0.80, 2: 0.85}, calls)
    kept, records, accepted = frontier_search(step, ("start", 1.0), 0.95, settings())
    assert [(c[0], c[2]) for c in calls] == [(("start", 1.0), 0.5), (("start", 1.0), 0.25)]
    assert not accepted and kept[0] == "model2"  # the better of two failures, flagged
    calls.clear()
    step = fake_step({1: 0.80, 2: 0.95, 3: 0.95, 4: 0.5}, calls)
    kept, records, accepted = frontier_search(step, ("start", 1.0), 0.95, settings())
    assert accepted and kept[0] == "model3"
    assert [c[2] for c in calls] == [0.5, 0.25, 0.25, 0.25]  # the gentler share goes on


def test_search_that_cannot_prune_at_all_says_what_to_change():
    def step(current, index, share):
        raise PruningLimitReached("no room")

    with pytest.raises(PruningLimitReached, match="max_layer_ratio"):
        frontier_search(step, "start", 0.9, settings())


def test_the_renumbered_table_follows_the_channels_across_steps():
    import pandas as pd

    table = pd.DataFrame({"layer": ["a"] * 5 + ["b"] * 3, "channel": [0, 1, 2, 3, 4, 0, 1, 2],
                          "norm_score": [0.1, 0.2, 0.3, 0.4, 0.5, 1.0, 2.0, 3.0]})
    first = to_original(table, {}, {"a": [0, 2]})
    second_table = surviving_table(table, first)
    assert second_table[second_table.layer == "a"]["norm_score"].tolist() == [0.2, 0.4, 0.5]
    assert second_table[second_table.layer == "a"]["channel"].tolist() == [0, 1, 2]
    # in the pruned model's numbering channel 1 is original 3
    assert to_original(table, first, {"a": [1], "b": [0]}) == {"a": [0, 2, 3], "b": [0]}


def test_auto_search_on_a_real_model_stops_where_accuracy_breaks(bundled_backbone, monkeypatch):
    """A model built to lose accuracy once it keeps less than 60 % of its MACs: the search
    ships the last step above that, records every step with onnxruntime timings, and the
    per-layer cap refers to the original channel counts across steps."""
    model = replace_head(copy.deepcopy(bundled_backbone), 3).eval()
    model.backbone_cfg = dataclasses.replace(model.backbone_cfg, input_size=32)
    x = torch.randn(1, 3, 32, 32)
    table = table_for(model, l1_scores(model), x, [model.classifier])
    from ft_pipelines.core.utils import count_macs_params

    macs0, _ = count_macs_params(model, x)
    monkeypatch.setattr(transtailor_module, "validation_top1",
                        lambda m, data: 0.9 if count_macs_params(m, x)[0] > 0.6 * macs0 else 0.3)
    params = {**UNGUARDED_PRUNING, "ratio": "auto", "step": 0.2, "max_ratio": 0.9,
              "target": "macs", "recovery_min_steps": 0,
              "recovery_epochs": 1, "finetune_epochs": 1, "max_layer_ratio": 0.75,
              "round_to": 8, "min_feature_channels": 16, "max_val_drop": 1.0, "max_attempts": 1,
              "distill": {"alpha": 0.5, "temperature": 4.0}}
    pruned, summary, history = prune_and_finetune(model, table, tiny_splits(), params)
    steps = summary["steps"]
    assert steps[0]["step"] == 0 and steps[0]["macs"] == macs0
    kept = [r for r in steps if r["kept"]]
    assert len(kept) == 1 and kept[0]["macs"] > 0.6 * macs0
    assert steps[-1]["macs"] <= 0.6 * macs0 and not steps[-1]["within_limit"]  # where it stopped
    assert len(steps) >= 3  # the fine-tuned model, >= 1 step within, the step below 0.6
    assert all(r["ort_latency_ms"] > 0 and r["ort_throughput"] > 0 for r in steps)
    assert [r["macs"] for r in steps] == sorted((r["macs"] for r in steps), reverse=True)
    assert summary["macs_after"] == kept[0]["macs"] and summary["accepted"]
    for layer, (before, after) in summary["layers"].items():
        assert after >= min(before, 8 * math.ceil(math.ceil(before * 0.25 - 1e-9) / 8)), layer
    assert pruned(torch.randn(2, 3, 32, 32)).shape == (2, 3)
    assert history["reg_term"].notna().all() and summary["distill"]["alpha"] == 0.5
    assert any("| yes |" in line for line in frontier_lines(summary))
    assert frontier_figure(steps).axes[0].get_xlabel().startswith("onnxruntime")


def _disagreeing_search():
    """Rank 1 measures its steps far below the budget and a different cost: both ranks must
    follow rank 0 (which stays within until step 3) and finish with the same records."""
    rank = world()[0]
    calls = []

    def step(current, index, share):
        calls.append(index)
        dist.all_reduce(torch.zeros(1))  # a step trains data-parallel: a collective per step
        accuracy = {1: 0.95, 2: 0.95, 3: 0.5}[index] if rank == 0 else 0.1
        return StepOutcome(f"model{index}", accuracy, (1 - share) ** index * (1 + rank))

    kept, records, accepted = frontier_search(step, "start", 0.95, settings())
    return _every_rank({"calls": calls, "kept": kept, "accepted": accepted,
                        "costs": [r["cost_fraction"] for r in records]})


def _every_rank(state: dict) -> list[dict]:
    gathered = [None] * world()[1]
    dist.all_gather_object(gathered, state)
    return gathered


@MULTI_PROCESS
def test_ranks_that_measure_differently_follow_rank_0s_search():
    rank0, rank1 = spawn_data_parallel(_disagreeing_search, (), 2, "cpu", timeout_s=60,
                                       task="frontier agreement test")
    assert rank0["calls"] == rank1["calls"] == [1, 2, 3]
    assert rank0["kept"] == rank1["kept"] == "model2" and rank1["accepted"]
    assert rank0["costs"] == rank1["costs"] == [0.5, 0.25, 0.125]


def test_latency_target_steps_by_measured_latency(bundled_backbone, monkeypatch):
    """target: latency: each step's cost is the measured onnxruntime latency (here a runtime
    whose latency grows as the square root of the MACs), and the MACs pruned per step adapt
    so that a step removes about its share of the latency."""
    from ft_pipelines.core.pruning import frontier as frontier_module
    from ft_pipelines.core.utils import count_macs_params

    model = replace_head(copy.deepcopy(bundled_backbone), 3).eval()
    model.backbone_cfg = dataclasses.replace(model.backbone_cfg, input_size=32)
    x = torch.randn(1, 3, 32, 32)
    table = table_for(model, l1_scores(model), x, [model.classifier])
    monkeypatch.setattr(
        frontier_module, "onnx_timings", lambda m, threads, reference=None, runner=None: {
            "ort_latency_ms": math.sqrt(count_macs_params(m, x)[0] / 1e6),
            "ort_throughput": 1.0})
    monkeypatch.setattr(transtailor_module, "validation_top1", lambda m, data: 0.9)
    params = {**UNGUARDED_PRUNING, "ratio": "auto", "step": 0.2, "max_ratio": 0.3,
              "target": "latency",
              "recovery_epochs": 0, "finetune_epochs": 1, "max_layer_ratio": 0.75,
              "round_to": None, "min_feature_channels": 16, "max_val_drop": 1.0,
              "max_attempts": 1, "distill": None}
    _, summary, _ = prune_and_finetune(model, table, tiny_splits(), params)
    steps = summary["steps"]
    first = steps[0]
    for row in steps[1:]:
        latency = row["ort_latency_ms"] / first["ort_latency_ms"]
        assert row["cost_fraction"] == pytest.approx(latency)
    # step 1 prunes 20 % of the MACs (no measurement yet): about 10 % of the latency goes
    assert steps[1]["pruned_share"] == pytest.approx(0.2)
    # then the MACs share doubles (latency fell half as fast as MACs)
    assert steps[2]["pruned_share"] == pytest.approx(0.4, rel=0.15)
    # the floor (30 % of the latency) is reached at step 2, give or take a measured overshoot
    assert len(steps) == 3 and summary["target"] == "latency"
    assert summary["cost_removed"] == pytest.approx(0.3, abs=0.05)


def test_latency_target_with_a_fixed_ratio_is_refused_with_the_fix():
    from ft_pipelines.params.validate import ParameterError, validate_parameters

    with pytest.raises(ParameterError, match=r"`pruning.target`: latency .* pruning.ratio: auto"):
        validate_parameters({"pruning": {"target": "latency", "ratio": 0.5}})
    assert validate_parameters({"pruning": {"target": "latency", "ratio": "auto"}})


@MULTI_PROCESS
@SLOW  # spawns ranks: pytest -m slow (.ci/run)
def test_auto_search_in_two_processes_prunes_as_one_process():
    """Recovery and fine-tuning train data-parallel with distillation; only rank 0 times the
    exported steps, the others take its measurements: both runs take the same steps."""
    from ft_pipelines.core.models.artifact import channel_counts
    from ft_pipelines.core.pruning import score_channels
    from tests.core.training.tiny import UNGUARDED_PRUNING, tiny_data, tiny_model

    runtime = {"device": "cpu", "precision": "fp32"}
    params = {**UNGUARDED_PRUNING, "ratio": "auto", "step": 0.5, "max_ratio": 0.6,
              "target": "channels", "recovery_min_steps": 0,
              "recovery_epochs": 1, "finetune_epochs": 1, "lr": 0.05, "max_val_drop": 100.0,
              "distill": {"alpha": 0.5, "temperature": 4.0}}
    model = tiny_model()
    splits = {"train": tiny_data(), "val": tiny_data(24, seed=1)}
    table = score_channels(model, splits["train"], "l1")
    single, single_summary, _ = prune_and_finetune(model, table, splits, params, None, runtime)
    double, summary, history = prune_and_finetune(
        model, table, splits, params, None, {**runtime, "distributed": {"processes": 2}})
    assert channel_counts(double) == channel_counts(single) != channel_counts(model)
    assert [r["macs"] for r in summary["steps"]] == [r["macs"] for r in single_summary["steps"]]
    assert len(summary["steps"]) == 3 and all(r["ort_latency_ms"] for r in summary["steps"])
    assert set(history["processes"]) == {2}


def test_recovery_is_counted_in_optimiser_steps_too():
    """max(recovery_epochs x steps_per_epoch, recovery_min_steps), as whole epochs: the digits
    demo (about 1,257 training images, 20 steps an epoch at batch 64) keeps its 2 epochs, a
    420-image folder (7 steps an epoch) gets 6, and 0 epochs stays no recovery."""
    from ft_pipelines.core.pruning.settings import PruningParams
    from ft_pipelines.core.pruning.transtailor import recovery_budget
    from ft_pipelines.core.utils.runtime import RuntimeParams

    runtime = RuntimeParams()
    defaults = PruningParams()
    assert (defaults.recovery_epochs, defaults.recovery_min_steps) == (2, 40)
    assert recovery_budget(defaults, 1257, runtime)["epochs"] == 2
    folder = recovery_budget(defaults, 420, runtime)
    assert (folder["epochs"], folder["steps_per_epoch"], folder["trained_steps"]) == (6, 7, 42)
    off = PruningParams(recovery_epochs=0, recovery_min_steps=40)
    assert recovery_budget(off, 420, runtime)["epochs"] == 0


def _searchable_lite0(bundled_backbone, monkeypatch):
    """The bundled network at 32 px with 3 classes, its L1 importance table, and a validation
    top-1 pinned at 90 % (every search step is within budget)."""
    model = replace_head(copy.deepcopy(bundled_backbone), 3).eval()
    model.backbone_cfg = dataclasses.replace(model.backbone_cfg, input_size=32)
    table = table_for(model, l1_scores(model), torch.randn(1, 3, 32, 32), [model.classifier])
    monkeypatch.setattr(transtailor_module, "validation_top1", lambda m, data: 0.9)
    return model, table


def test_search_steps_recover_for_the_minimum_of_optimiser_steps(bundled_backbone, monkeypatch):
    """24 training images are one step an epoch: with recovery_epochs 1 and
    recovery_min_steps 3 every search step recovers for 3 epochs (3 optimiser steps), and the
    summary says so."""
    model, table = _searchable_lite0(bundled_backbone, monkeypatch)
    epochs_trained = []
    real_train = transtailor_module._train

    def spy(pruned, splits, config, *args, **kwargs):
        epochs_trained.append(config.epochs)
        return real_train(pruned, splits, config, *args, **kwargs)

    monkeypatch.setattr(transtailor_module, "_train", spy)
    params = {**UNGUARDED_PRUNING, "ratio": "auto", "step": 0.3, "max_ratio": 0.3,
              "target": "macs", "recovery_epochs": 1, "recovery_min_steps": 3,
              "finetune_epochs": 1, "max_layer_ratio": 0.75, "round_to": None,
              "min_feature_channels": 16, "max_val_drop": 1.0, "max_attempts": 1}
    _, summary, _ = prune_and_finetune(model, table, tiny_splits(), params)
    searched = len(summary["steps"]) - 1
    assert searched >= 1
    assert epochs_trained == [3] * searched + [1]  # each step's recovery, then the fine-tuning
    assert summary["recovery"]["epochs"] == 3 and summary["recovery"]["steps_per_epoch"] == 1


def test_each_step_is_timed_against_the_unpruned_export_in_the_same_rounds(bundled_backbone,
                                                                           monkeypatch):
    """The search times with the evaluation's interleaved timer: every pruned step alternates
    with the unpruned export, and target: latency uses the within-round ratio as the cost."""
    from ft_pipelines.core.pruning import frontier as frontier_module

    model, table = _searchable_lite0(bundled_backbone, monkeypatch)
    calls = []
    real = frontier_module.compare_timings

    def spy(models, batch, **kwargs):
        calls.append((sorted(models), kwargs.get("reference"), kwargs["rounds"]))
        return real(models, batch, **kwargs)

    monkeypatch.setattr(frontier_module, "compare_timings", spy)
    params = {**UNGUARDED_PRUNING, "ratio": "auto", "step": 0.3, "max_ratio": 0.3,
              "target": "latency", "recovery_epochs": 0, "finetune_epochs": 1,
              "max_layer_ratio": 0.75, "round_to": None, "min_feature_channels": 16,
              "max_val_drop": 1.0, "max_attempts": 1}
    _, summary, _ = prune_and_finetune(model, table, tiny_splits(), params)
    steps = summary["steps"][1:]
    assert steps and calls[0] == (["step"], None, 5)  # the unpruned model alone, step 0
    assert calls[1:] == [(["step", "unpruned"], "unpruned", 5)] * len(steps)
    for row in steps:
        assert row["cost_fraction"] == row["ort_latency_ratio"] > 0
        assert row["ort_throughput_ratio"] > 0


def test_input_sizes_are_the_scales_rounded_to_8_px_largest_first_never_below_32():
    assert input_sizes(96, [0.67]) == [64]
    assert input_sizes(96, [0.5, 0.84, 0.67]) == [80, 64, 48]
    assert input_sizes(224, [0.67]) == [152]
    assert input_sizes(48, [0.67, 0.5]) == [32]  # 32 and 24 -> 32, once
    assert input_sizes(32, [0.67]) == [] and input_sizes(96, []) == []


def _size_step(accuracy_of_size: dict[int, float], calls: list):
    def step(current, index, size):
        calls.append((current, index, size))
        return StepOutcome(f"model{size}", accuracy_of_size[size], size / 100, {"input_size": size})

    return step


def test_input_steps_stop_at_the_first_size_over_budget_and_keep_the_last_within():
    calls = []
    step = _size_step({80: 0.95, 64: 0.945, 48: 0.90, 32: 0.95}, calls)
    kept, records = input_size_search(step, "channels", [80, 64, 48, 32], 4, 0.95, 1.0)
    assert [c[1:] for c in calls] == [(4, 80), (5, 64), (6, 48)]  # never tried 32
    assert calls[1][0] == "model80" and kept == "model64"  # each from the last within
    assert [r["kept"] for r in records] == [False, True, False]
    assert [r["step"] for r in records] == [4, 5, 6] and records[1]["input_size"] == 64
    kept, records = input_size_search(_size_step({80: 0.5}, []), "channels", [80, 64], 4,
                                      0.95, 1.0)
    assert kept == "channels" and not any(r["kept"] for r in records)  # the input stays


def _disagreeing_input_search():
    """Rank 1 measures every size far below the budget: both ranks follow rank 0, which is
    within at 80 px and over at 64."""
    rank = world()[0]
    calls = []

    def step(current, index, size):
        calls.append(size)
        dist.all_reduce(torch.zeros(1))  # recovery trains data-parallel: a collective per step
        accuracy = {80: 0.95, 64: 0.5}[size] if rank == 0 else 0.1
        return StepOutcome(f"model{size}", accuracy, size / 100 * (1 + rank))

    kept, records = input_size_search(step, "channels", [80, 64, 48], 4, 0.95, 1.0)
    return _every_rank({"calls": calls, "kept": kept,
                        "costs": [r["cost_fraction"] for r in records]})


@MULTI_PROCESS
def test_ranks_that_measure_differently_follow_rank_0s_input_steps():
    rank0, rank1 = spawn_data_parallel(_disagreeing_input_search, (), 2, "cpu", timeout_s=60,
                                       task="input-size agreement test")
    assert rank0["calls"] == rank1["calls"] == [80, 64]
    assert rank0["kept"] == rank1["kept"] == "model80"
    assert rank0["costs"] == rank1["costs"] == [0.8, 0.64]


def _splits_at(size: int) -> dict[str, ImageData]:
    generator = torch.Generator().manual_seed(0)
    return {name: ImageData(torch.randint(0, 256, (n, 3, size, size), generator=generator,
                                          dtype=torch.uint8), torch.arange(n) % 3)
            for name, n in (("train", 24), ("val", 12))}


@pytest.mark.parametrize("small_size_accuracy", [0.9, 0.3])
def test_the_search_shrinks_the_input_only_within_the_budget(bundled_backbone, monkeypatch,
                                                             tmp_path, small_size_accuracy):
    """After the channel steps, a 48 px model tries 32 px (trained and judged on the images
    decoded at 32): kept when its accuracy holds, with every stored form at 32 px; else the
    channel step ships at 48."""
    model = replace_head(copy.deepcopy(bundled_backbone), 3).eval()
    model.backbone_cfg = dataclasses.replace(model.backbone_cfg, input_size=48)
    table = table_for(model, l1_scores(model), torch.randn(1, 3, 48, 48), [model.classifier])
    sizes_judged = []

    def accuracy(m, data):
        sizes_judged.append((m.backbone_cfg.input_size, data.images.shape[-1]))
        return small_size_accuracy if m.backbone_cfg.input_size == 32 else 0.9

    monkeypatch.setattr(transtailor_module, "validation_top1", accuracy)
    params = {**UNGUARDED_PRUNING, "ratio": "auto", "step": 0.3, "max_ratio": 0.3,
              "target": "macs", "recovery_min_steps": 0, "recovery_epochs": 1,
              "finetune_epochs": 1, "max_val_drop": 1.0, "max_attempts": 1,
              "input_scales": [0.67]}
    pruned, summary, _ = prune_and_finetune(model, table, _splits_at(48), params, None, None,
                                            {32: _splits_at(32)})
    assert all(model_size == data_size for model_size, data_size in sizes_judged)
    steps = summary["steps"]
    assert [r["input_size"] for r in steps] == [48, 48, 32]
    assert steps[2]["macs"] < 0.5 * steps[1]["macs"]  # (32/48)^2 = 0.44 of the MACs
    shrunk = small_size_accuracy == 0.9
    assert [r["kept"] for r in steps] == [False, not shrunk, shrunk]
    assert summary["input_size_after"] == pruned.backbone_cfg.input_size == (32 if shrunk else 48)
    assert summary["macs_after"] == steps[2 if shrunk else 1]["macs"]
    save_model_file(pruned, tmp_path / "pruned.safetensors")
    loaded = load_model_file(tmp_path / "pruned.safetensors")
    assert loaded.backbone_cfg.input_size == pruned.backbone_cfg.input_size
