"""TransTailor end to end: target-aware channel scores, structural pruning with recovery, and
importance-aware fine-tuning. Orchestration of the gates, the structural pruning and training."""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from ft_pipelines.core.data import ImageData
from ft_pipelines.core.export import OnnxRunner
from ft_pipelines.core.models import with_input_size
from ft_pipelines.core.pruning.baselines import feeding_convs
from ft_pipelines.core.pruning.distill import Distillation, check_plain_loss
from ft_pipelines.core.pruning.frontier import (
    SearchSettings,
    StepOutcome,
    frontier_search,
    input_size_search,
    input_sizes,
    onnx_runner,
    step_costs,
    surviving_table,
    timing_rank,
    to_original,
)
from ft_pipelines.core.pruning.importance import example_inputs, normalised_batches
from ft_pipelines.core.pruning.settings import PruningParams
from ft_pipelines.core.pruning.structural import prune_by_importance
from ft_pipelines.core.regularizers import L2SP, CompositeRegularizer
from ft_pipelines.core.strategy.budget import resolve_budget
from ft_pipelines.core.training import (
    TrainConfig,
    Trainer,
    default_callbacks,
    rank0_decides,
    run_data_parallel,
    set_activity,
)
from ft_pipelines.core.utils import (
    classifier_name,
    head_parameter_names,
    model_size_bytes,
    preserved_modes,
)
from ft_pipelines.core.utils.runtime import RuntimeParams

logger = logging.getLogger(__name__)
#: a search step may remove up to this much more of the MACs than its share (it records what
#: it removed; a finer bisection costs a pruned copy per halving)
STEP_MACS_TOLERANCE = 0.05


def _classifier(model: nn.Module) -> nn.Module:
    return model.get_submodule(classifier_name(model))


def importance_strength(model: nn.Module, table: pd.DataFrame,
                        removed: dict[str, list[int]]) -> dict[str, torch.Tensor]:
    """L2-SP anchor strength per surviving output channel of each conv feeding a scored BN.

    Proportional to the channel's layer-normalised importance, scaled to mean 1 per layer, so
    important filters are held close to their fine-tuned values and weak ones may move.
    """
    param_names = {module: name for name, module in model.named_modules()}
    strength = {}
    for bn_name, conv in feeding_convs(model).items():
        rows = table[table["layer"] == bn_name].sort_values("channel")
        if rows.empty:
            continue
        keep = np.setdiff1d(rows["channel"].to_numpy(), np.asarray(removed.get(bn_name, []),
                                                                    dtype=np.int64))
        scores = rows.set_index("channel").loc[keep, "norm_score"].to_numpy(dtype=np.float64)
        if len(scores) != conv.out_channels or scores.mean() <= 0:
            continue
        strength[f"{param_names[conv]}.weight"] = torch.tensor(scores / scores.mean(),
                                                               dtype=torch.float32)
    return strength


def _train(model: nn.Module, splits: dict[str, ImageData], config: TrainConfig,
           regularizer: Any = None, checkpoint_dir: Path | None = None) -> pd.DataFrame:
    trainer = Trainer(model, config, regularizer, default_callbacks(config, checkpoint_dir),
                      head_parameter_names(model))
    return trainer.fit(splits["train"], splits["val"])


@torch.inference_mode()
def validation_top1(model: nn.Module, data: ImageData, batch_size: int = 256) -> float:
    """Top-1 accuracy of ``model`` (eval mode, on the CPU) on ``data``; the back-off's yardstick."""
    correct = 0
    with preserved_modes(model, training=False):
        for images, labels in normalised_batches(model, data, batch_size):
            correct += int((model(images).argmax(1) == labels).sum())
    return correct / max(1, len(data))


def back_off(attempt: Callable[[int, float], tuple[Any, float, dict]], ratio: float,
             reference: float, max_drop_points: float, max_attempts: int
             ) -> tuple[Any, list[dict], bool]:
    """Run ``attempt(index, ratio)`` -> (result, validation top-1, details to record), halving
    the ratio while the drop from ``reference`` exceeds ``max_drop_points`` (percentage points),
    at most ``max_attempts`` times. Keeps the first attempt within the limit (the most
    compressed acceptable one), else the one with the best validation top-1. Returns (kept
    result, one record per attempt, whether the kept one is within the limit)."""
    records, results = [], []
    for index in range(max_attempts):
        started = time.perf_counter()
        set_activity(f"pruning attempt {index + 1} of at most {max_attempts} (ratio {ratio:.3f})")
        result, val_top1, details = attempt(index, ratio)
        # one yardstick for every rank: rank 0's measurement decides accept / back off / keep
        val_top1 = rank0_decides(val_top1)
        drop = 100.0 * (reference - val_top1)
        records.append({"attempt": index + 1, "ratio": ratio, **details, "val_top1": val_top1,
                        "val_drop_points": drop, "within_limit": drop <= max_drop_points,
                        "seconds": time.perf_counter() - started})
        results.append(result)
        logger.info("Pruning attempt %d at ratio %.3f: val top-1 %.4f (%.2f points below the "
                    "fine-tuned %.4f)", index + 1, ratio, val_top1, drop, reference)
        if drop <= max_drop_points:
            break
        ratio /= 2.0
    kept = next((i for i, r in enumerate(records) if r["within_limit"]),
                max(range(len(records)), key=lambda i: records[i]["val_top1"]))
    for index, record in enumerate(records):
        record["kept"] = index == kept
    return results[kept], records, records[kept]["within_limit"]


def _train_config(runtime: RuntimeParams, **settings: Any) -> TrainConfig:
    return TrainConfig(device=runtime.device, precision=runtime.precision, **settings)


def recovery_budget(params: PruningParams, train_images: int, runtime: RuntimeParams
                    ) -> dict[str, Any]:
    """The recovery after each pruning step: ``max(recovery_epochs x steps_per_epoch,
    recovery_min_steps)`` optimiser steps, trained as whole epochs (``epochs``). Counted in
    steps because a small data set (7 steps an epoch) is not recovered by 2 epochs: the search
    judged every step over the budget (docs/performance.md). ``recovery_epochs: 0`` turns the
    recovery off whatever the floor."""
    batch_size = _train_config(runtime, epochs=1).batch_size
    if params.recovery_epochs == 0:
        return {"epochs": 0, "steps": 0, "batch_size": batch_size,
                "reason": "recovery_epochs 0: no recovery"}
    budget = resolve_budget({"epochs": params.recovery_epochs,
                             "min_steps": params.recovery_min_steps},
                            max(1, train_images), batch_size)
    return {key: budget[key] for key in ("epochs", "steps", "trained_steps", "steps_per_epoch",
                                         "batch_size", "reason")}


def _feature_floor(model: nn.Module, params: PruningParams) -> int:
    num_classes = getattr(_classifier(model), "out_features", 1)
    return max(num_classes, params.min_feature_channels)


def _with_distillation(regularizer: Any, teacher: nn.Module | None, config: TrainConfig,
                       splits: dict[str, ImageData], params: PruningParams) -> Any:
    """``regularizer`` plus distillation from ``teacher`` when ``pruning.distill`` is set."""
    settings = params.distill
    if settings is None or teacher is None:
        return regularizer
    check_plain_loss(config)
    distill = Distillation(teacher, splits["train"].labels, settings.alpha,
                           settings.temperature)
    return distill if regularizer is None else CompositeRegularizer([regularizer, distill])


def _finetune(model: nn.Module, table: pd.DataFrame, removed: dict[str, list[int]],  # noqa: PLR0917
              splits: dict[str, ImageData], params: PruningParams, runtime: RuntimeParams,
              epochs: int, seed: int, checkpoint_dir: Path | None,
              teacher: nn.Module | None = None, progress: bool = True) -> pd.DataFrame:
    """Importance-aware fine-tuning of a pruned ``model`` in place: L2-SP toward its current
    weights, each surviving filter held by its importance (``removed``: original indices), and
    distillation from ``teacher`` when ``pruning.distill`` is set."""
    anchor = {k: v.detach().clone() for k, v in model.state_dict().items()}
    regularizer = L2SP(model, anchor, alpha=params.anchor_alpha, beta=0.0,
                       channel_strength=importance_strength(model, table, removed))
    config = _train_config(runtime, epochs=epochs, lr_pretrained=params.lr, lr_new=params.lr,
                           seed=seed, warmup_epochs=0.0, progress=progress)
    regularizer = _with_distillation(regularizer, teacher, config, splits, params)
    history = _train(model, splits, config, regularizer, checkpoint_dir)
    model.cpu()
    return history


def _prune_once(model: nn.Module, table: pd.DataFrame, splits: dict[str, ImageData],
                params: PruningParams, runtime: RuntimeParams, ratio: float,
                checkpoint_dir: Path | None) -> tuple[nn.Module, dict[str, Any], pd.DataFrame]:
    """Prune a copy of ``model`` at ``ratio`` in ``steps`` with short recovery, then
    importance-aware fine-tuning (distilled from ``model`` when ``pruning.distill`` is set)."""
    teacher = model
    model = copy.deepcopy(model).cpu()
    model.requires_grad_(True)  # every surviving filter may adapt to its pruned neighbours
    seed = params.seed
    recovery = recovery_budget(params, len(splits["train"]), runtime)

    def recover(pruned: nn.Module, step: int) -> None:
        if step + 1 < params.steps and recovery["epochs"] > 0:
            config = _train_config(runtime, epochs=recovery["epochs"],
                                   lr_pretrained=params.lr, lr_new=params.lr,
                                   seed=seed + 100 + step, warmup_epochs=0.0, progress=False)
            _train(pruned, splits, config,
                   _with_distillation(None, teacher, config, splits, params))
            pruned.cpu()

    summary = prune_by_importance(
        model, table, example_inputs(model), ratio, target=params.target, steps=params.steps,
        ignored_layers=[_classifier(model)], recover=recover,
        max_layer_ratio=params.max_layer_ratio, round_to=params.round_to,
        feature_floor=_feature_floor(model, params))
    history = _finetune(model, table, summary["removed_channels"], splits, params, runtime,
                        params.finetune_epochs, seed, checkpoint_dir, teacher)
    summary.pop("removed_channels")  # original indices: large, and derivable from the table
    return model.cpu(), summary, history


def _prune_step(parent: nn.Module, table: pd.DataFrame,  # noqa: PLR0917 (one search step)
                removed_before: dict[str, list[int]], original: dict[str, int],
                splits: dict[str, ImageData], params: PruningParams, runtime: RuntimeParams,
                share: float, index: int, checkpoint_dir: Path | None,
                teacher: nn.Module | None = None) -> tuple[nn.Module, dict[str, list[int]]]:
    """One step of the search: a copy of ``parent`` (already pruned by ``removed_before``,
    original indices) loses ``share`` of its MACs or channels in one go, then recovers for
    :func:`recovery_budget`'s epochs (distilled from ``teacher``). Returns (the pruned copy,
    original indices removed in all)."""
    model = copy.deepcopy(parent).cpu()
    model.requires_grad_(True)
    target = "channels" if params.target == "channels" else "macs"  # latency: via MACs
    summary = prune_by_importance(
        model, surviving_table(table, removed_before), example_inputs(model), share,
        target=target, steps=1, ignored_layers=[_classifier(model)],
        max_layer_ratio=params.max_layer_ratio, round_to=params.round_to,
        feature_floor=_feature_floor(model, params), original_channels=original,
        macs_tolerance=STEP_MACS_TOLERANCE)
    removed = to_original(table, removed_before, summary["removed_channels"])
    _recover(model, table, removed, splits, params, runtime, index, checkpoint_dir, teacher)
    return model.cpu(), removed


def _recover(model: nn.Module, table: pd.DataFrame,  # noqa: PLR0917 (one search step)
             removed: dict[str, list[int]], splits: dict[str, ImageData], params: PruningParams,
             runtime: RuntimeParams, index: int, checkpoint_dir: Path | None,
             teacher: nn.Module | None) -> None:
    """A search step's recovery in place: :func:`recovery_budget`'s epochs, distilled from
    ``teacher``, seeded by the step."""
    epochs = recovery_budget(params, len(splits["train"]), runtime)["epochs"]
    if epochs > 0:
        _finetune(model, table, removed, splits, params, runtime, epochs,
                  params.seed + 100 + index, checkpoint_dir, teacher, progress=False)


def prune_and_finetune(model: nn.Module, table: pd.DataFrame, splits: dict[str, ImageData],
                       params: PruningParams | dict[str, Any],
                       checkpoint_dir: Path | None = None,
                       runtime: RuntimeParams | dict[str, Any] | None = None,
                       splits_by_size: dict[int, dict[str, ImageData]] | None = None
                       ) -> tuple[nn.Module, dict[str, Any], pd.DataFrame]:
    """Prune, recover and fine-tune a copy of ``model``; back off the ratio (see
    :func:`back_off`) while validation top-1 falls more than ``max_val_drop`` points below the
    fine-tuned model's. The summary lists every attempt and whether the kept one is within.

    ``runtime`` (the ``runtime`` parameters block) sets device, precision and data parallelism
    as for fine-tuning: with N processes every rank prunes the same channels (same model and
    table), recovery and importance-aware fine-tuning train data-parallel, every rank takes the
    same back-off decisions (its validation top-1 is computed from the same synchronised
    weights), and rank 0's pruned model comes back.

    ``splits_by_size``: the same splits decoded at each of ``input_sizes(model's size,
    pruning.input_scales)`` (``ratio: auto``); a size without them is not tried.
    """
    params = PruningParams.model_validate(params)  # a plain dict (scripts): the schema's defaults
    runtime = RuntimeParams.model_validate(runtime or {})
    return run_data_parallel(_prune_and_finetune_here, (model, table, splits, params, runtime,
                                                        checkpoint_dir, splits_by_size or {}),
                             runtime,
                             task="pruning (prune, recover, fine-tune)")


def _prune_and_finetune_here(model: nn.Module, table: pd.DataFrame,
                             splits: dict[str, ImageData], params: PruningParams,
                             runtime: RuntimeParams, checkpoint_dir: Path | None,
                             splits_by_size: dict[int, dict[str, ImageData]]
                             ) -> tuple[nn.Module, dict[str, Any], pd.DataFrame]:
    """:func:`prune_and_finetune` in this process (one rank of several when a group exists)."""
    reference = validation_top1(model.cpu(), splits["val"])
    if params.ratio == "auto":
        return _search_here(model, table, {model.backbone_cfg.input_size: splits,
                                           **splits_by_size},
                            params, runtime, checkpoint_dir, reference)

    def attempt(index: int, ratio: float) -> tuple[tuple, float, dict]:
        directory = None if checkpoint_dir is None else Path(checkpoint_dir) / f"attempt-{index}"
        pruned, summary, history = _prune_once(model, table, splits, params, runtime, ratio,
                                               directory)
        details = {"channel_ratio": summary["channel_ratio"],
                   "macs_ratio": summary["macs_after"] / summary["macs_before"]}
        return (pruned, summary, history), validation_top1(pruned, splits["val"]), details

    (pruned, summary, history), attempts, accepted = back_off(
        attempt, params.ratio, reference, params.max_val_drop, params.max_attempts)
    kept = next(a for a in attempts if a["kept"])
    summary.update({
        "importance": params.importance,
        "size_bytes_before": model_size_bytes(model), "size_bytes_after": model_size_bytes(pruned),
        "val_top1_finetuned": reference, "val_top1": kept["val_top1"],
        "val_drop_points": kept["val_drop_points"], "max_val_drop": params.max_val_drop,
        "distill": _plain(params.distill), "accepted": accepted, "attempts": attempts,
        "recovery": recovery_budget(params, len(splits["train"]), runtime)})
    _warn_if_rejected(summary)
    return pruned, summary, history


def _warn_if_rejected(summary: dict[str, Any]) -> None:
    if not summary["accepted"]:
        logger.warning("The pruned model stays %.2f points below the fine-tuned one on the "
                       "validation split after %d attempts: it is reported as not recommended.",
                       summary["val_drop_points"], len(summary["attempts"]))


def _channel_counts(model: nn.Module) -> dict[str, int]:
    return {name: module.num_features for name, module in model.named_modules()
            if isinstance(module, nn.BatchNorm2d)}


def _latency_fraction(row: dict[str, Any], first: dict[str, Any]) -> float | None:
    """A step's latency as a fraction of the unpruned model's: the within-round ratio when the
    step was timed against it (``onnx_timings``), else the ratio of the two medians."""
    if row.get("ort_latency_ratio") is not None:
        return row["ort_latency_ratio"]
    if row["ort_latency_ms"] is None or first["ort_latency_ms"] is None:
        return None
    return row["ort_latency_ms"] / first["ort_latency_ms"]


def _cost_fraction(target: str, row: dict[str, Any], first: dict[str, Any]) -> float | None:
    """A step's remaining cost as a fraction of the unpruned model's (``first``: step 0)."""
    if target == "latency":
        return _latency_fraction(row, first)
    key = {"macs": "macs", "channels": "channels"}[target]
    if row[key] is None or first[key] is None:
        return None  # a rank that does not time: rank 0's value is used (rank0_decides)
    return row[key] / first[key]


def _pruning_share(target: str, share: float, parent: dict[str, Any], first: dict[str, Any]
                   ) -> float:
    """Share of the parent's MACs to prune so that ``share`` of its cost goes. For latency,
    MACs are the lever: the share is scaled by how much latency the MACs removed so far took
    with them (1 at the first step; measured on rank 0, so the same on every rank)."""
    if target != "latency":
        return share
    macs_removed = 1.0 - parent["macs"] / first["macs"]
    latency_removed = 1.0 - (_latency_fraction(parent, first) or 1.0)
    elasticity = 1.0
    if macs_removed > 0.01 and latency_removed > 0.01:
        elasticity = min(4.0, max(0.25, latency_removed / macs_removed))
    return min(0.9, max(0.02, share / elasticity))


def _plain(distill: Any) -> dict[str, Any] | None:
    return None if distill is None else distill.model_dump()


def _measured_row(model: nn.Module, runtime: RuntimeParams,
                  reference: OnnxRunner | None = None, runner: OnnxRunner | None = None
                  ) -> dict[str, Any]:
    """MACs, parameters, channels and (rank 0's) onnxruntime timings, against ``reference``
    (the unpruned export) in the same rounds when given (``runner``: ``model``'s session when
    there is one); the same on every rank."""
    row = {**step_costs(model, runtime.threads, timing_rank(), reference, runner),
           "channels": sum(_channel_counts(model).values())}
    return rank0_decides(row)


def _search_here(model: nn.Module, table: pd.DataFrame,  # noqa: PLR0917 (the stage's inputs)
                 by_size: dict[int, dict[str, ImageData]], params: PruningParams,
                 runtime: RuntimeParams, checkpoint_dir: Path | None, reference: float
                 ) -> tuple[nn.Module, dict[str, Any], pd.DataFrame]:
    """``pruning.ratio: auto`` in this process: :func:`frontier_search` over pruning steps, then
    :func:`input_size_search` over smaller inputs (``by_size``: the splits decoded at each
    size, the fine-tuned model's included), then importance-aware fine-tuning of the kept step."""
    size = model.backbone_cfg.input_size
    splits, target = by_size[size], params.target
    original = _channel_counts(model)
    logger.info("Pruning search: each step recovers for %s",
                recovery_budget(params, len(splits["train"]), runtime)["reason"])
    # every step is timed against the unpruned export in the same rounds (rank 0 times)
    unpruned = onnx_runner(model, runtime.threads) if timing_rank() else None
    first = {"step": 0, "attempt": 0, "ratio": 0.0,
             **_measured_row(model, runtime, runner=unpruned),
             "cost_fraction": 1.0, "val_top1": reference, "val_drop_points": 0.0,
             "within_limit": True, "kept": False}

    def outcome(candidate: tuple[nn.Module, dict, dict], data: dict[str, ImageData],
                **details: Any) -> StepOutcome:
        row = _measured_row(candidate[0], runtime, unpruned)
        details = {**row, "macs_ratio": row["macs"] / first["macs"], **details}
        return StepOutcome((*candidate[:2], row), validation_top1(candidate[0], data["val"]),
                           _cost_fraction(target, row, first), details)

    def step(current: tuple[nn.Module, dict, dict], index: int, share: float) -> StepOutcome:
        parent, removed_before, parent_row = current
        prune_share = _pruning_share(target, share, parent_row, first)
        pruned, removed = _prune_step(parent, table, removed_before, original, splits, params,
                                      runtime, prune_share, index,
                                      _step_dir(checkpoint_dir, index), teacher=model)
        return outcome((pruned, removed, None), splits, pruned_share=prune_share)

    def shrink(current: tuple[nn.Module, dict, dict], index: int, new_size: int) -> StepOutcome:
        smaller = with_input_size(copy.deepcopy(current[0]).cpu(), new_size)
        smaller.requires_grad_(True)
        _recover(smaller, table, current[1], by_size[new_size], params, runtime, index,
                 _step_dir(checkpoint_dir, index), model)
        return outcome((smaller, current[1], None), by_size[new_size])

    settings = SearchSettings(share=params.step, max_ratio=params.max_ratio,
                              max_drop_points=params.max_val_drop,
                              max_attempts=params.max_attempts)
    kept, steps, within = frontier_search(step, (model, {}, first), reference, settings)
    asked = input_sizes(size, params.input_scales) if within else []
    sizes = [s for s in asked if s in by_size]
    if sizes != asked:
        logger.info("Pruning search: no images decoded at %s px were given: those input sizes "
                    "are not tried", sorted(set(asked) - set(sizes)))
    kept, size_steps = input_size_search(shrink, kept, sizes, len(steps) + 1, reference,
                                         params.max_val_drop)
    if any(r["kept"] for r in size_steps):
        next(r for r in steps if r["kept"])["kept"] = False
    pruned, removed, _ = kept
    data = by_size[pruned.backbone_cfg.input_size]
    history = _finetune(pruned, table, removed, data, params, runtime, params.finetune_epochs,
                        params.seed, checkpoint_dir and Path(checkpoint_dir) / "finetune", model)
    val_top1 = rank0_decides(validation_top1(pruned, data["val"]))
    summary = _search_summary(model, pruned, params, settings, [first, *steps, *size_steps],
                              reference, val_top1, recovery_budget(params, len(data["train"]),
                                                                   runtime))
    _warn_if_rejected(summary)
    return pruned, summary, history


def _step_dir(checkpoint_dir: Path | None, index: int) -> Path | None:
    return None if checkpoint_dir is None else Path(checkpoint_dir) / f"step-{index}"


def _search_summary(model: nn.Module, pruned: nn.Module,  # noqa: PLR0917 (one summary)
                    params: PruningParams, settings: SearchSettings, steps: list[dict],
                    reference: float, val_top1: float, recovery: dict[str, Any]
                    ) -> dict[str, Any]:
    """The search's ``pruning_summary``: the kept step, what it cost, every step tried."""
    first, kept = steps[0], next(r for r in steps if r["kept"])
    original, after = _channel_counts(model), _channel_counts(pruned)
    drop = 100.0 * (reference - val_top1)
    return {
        "target": params.target, "ratio": "auto", "share": settings.share,
        "max_ratio": settings.max_ratio, "distill": _plain(params.distill), "recovery": recovery,
        "cost_removed": 1.0 - kept["cost_fraction"],
        "channel_ratio": 1.0 - sum(after.values()) / sum(original.values()),
        "max_layer_ratio": params.max_layer_ratio,
        "round_to": params.round_to, "feature_floor": _feature_floor(model, params),
        "input_size_before": model.backbone_cfg.input_size,
        "input_size_after": pruned.backbone_cfg.input_size,
        "input_scales": list(params.input_scales),
        "macs_before": first["macs"], "macs_after": kept["macs"],
        "params_before": first["params"], "params_after": kept["params"],
        "layers": {name: [original[name], after[name]] for name in original},
        "importance": params.importance,
        "size_bytes_before": model_size_bytes(model), "size_bytes_after": model_size_bytes(pruned),
        "val_top1_finetuned": reference, "val_top1_step": kept["val_top1"], "val_top1": val_top1,
        "val_drop_points": drop, "max_val_drop": settings.max_drop_points,
        "accepted": drop <= settings.max_drop_points, "steps": steps, "attempts": steps[1:]}
