"""Training-loop benchmark: seconds per epoch, images/s and peak memory of ``Trainer``.

Variants, each on the same data, model, batch size, optimiser and threads:

* head-only (``trainable_blocks=0``) and partial (``trainable_blocks=2``) fine-tuning with
  ``Trainer`` using the frozen-prefix activation cache, ``Trainer`` without it, and a plain
  hand-written PyTorch loop;
* full fine-tuning (``trainable_blocks="all"``, nothing to cache) with ``Trainer`` and the
  plain loop.

Targets from the issue: full fine-tuning with ``Trainer`` at most 5% slower than the plain loop;
for head-only, the cache at least 5x faster per epoch than ``Trainer`` without it.

Example (see benchmarks/README.md)::

    python benchmarks/bench_training.py --images 512 --size 96 --epochs 2 --batch-size 64 \
        --threads 2 --out benchmarks/results/training.json \
        --markdown docs/_bench_training_table.md
"""

from __future__ import annotations

import argparse
import copy
import ctypes
import ctypes.util
import datetime as dt
import gc
import json
import logging
import platform
import re
import resource
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ft_pipelines.core.analysis import split_image_data
from ft_pipelines.core.backbones import create_backbone
from ft_pipelines.core.finetune import new_parameter_names
from ft_pipelines.core.images import build_images_table, load_records, validate_records
from ft_pipelines.core.surgery import apply_surgery
from ft_pipelines.core.training import (
    ImageData,
    TrainConfig,
    Trainer,
    default_callbacks,
    frozen_prefix_length,
    prefix_activations,
)

logger = logging.getLogger("bench_training")

SETTINGS: dict[str, int | str] = {"head_only": 0, "partial": 2, "full": "all"}
# (setting, loop, use_cache); "full" has no frozen prefix, so there is no cached variant.
VARIANTS: list[tuple[str, str, bool]] = [
    ("head_only", "plain", False),
    ("head_only", "ours", False),
    ("head_only", "ours", True),
    ("partial", "plain", False),
    ("partial", "ours", False),
    ("partial", "ours", True),
    ("full", "plain", False),
    ("full", "ours", False),
]
FULL_MAX_SLOWDOWN = 1.05
HEAD_ONLY_MIN_CACHE_SPEEDUP = 5.0
CACHE_BATCH_SIZE = 256  # what Trainer uses to build the cache
MB = 1024.0 * 1024.0


@dataclass
class BenchSetup:
    """Everything shared by all variants."""

    pristine: nn.Module  # the pretrained backbone before surgery, never trained
    train: ImageData
    val: ImageData
    num_classes: int
    args: argparse.Namespace


# --------------------------------------------------------------------------- memory


_LIBC = ctypes.CDLL(ctypes.util.find_library("c")) if ctypes.util.find_library("c") else None


def _status_kb(field: str) -> int | None:
    try:
        text = Path("/proc/self/status").read_text()
    except OSError:
        return None
    match = re.search(rf"^{field}:\s+(\d+)\s+kB", text, re.MULTILINE)
    return int(match.group(1)) if match else None


def release_memory() -> None:
    """Free what the last variant left, and hand glibc's free heap back to the OS.

    Without ``malloc_trim`` freed tensors stay in the process's RSS, and the next variant would
    reuse them without raising its peak (under-reporting its memory).
    """
    gc.collect()
    if _LIBC is not None and hasattr(_LIBC, "malloc_trim"):
        _LIBC.malloc_trim(0)


def reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS counter (Linux >= 4.0); False where that is not possible."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def current_rss_mb() -> float:
    kb = _status_kb("VmRSS")
    return kb / 1024.0 if kb is not None else peak_rss_mb()


def peak_rss_mb() -> float:
    """Peak RSS since the last reset (VmHWM), or since process start (getrusage) as fallback."""
    kb = _status_kb("VmHWM")
    if kb is None:
        max_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return max_rss / MB if sys.platform == "darwin" else max_rss / 1024.0  # bytes vs KiB
    return kb / 1024.0


# --------------------------------------------------------------------------- data and model


def _seeded_head(data: ImageData, count: int, seed: int) -> ImageData:
    """``count`` images after a seeded shuffle (the split is grouped by class)."""
    order = torch.randperm(len(data), generator=torch.Generator().manual_seed(seed))[:count]
    return ImageData(data.images[order].contiguous(), data.labels[order].contiguous())


def load_digits(size: int, train_images: int, val_images: int, seed: int) -> tuple:
    """scikit-learn digits through the ingestion code, decoded at ``size`` px."""
    records, bad = validate_records(load_records("sklearn_digits"), "error")
    table, class_names, _ = build_images_table(records, seed=seed, bad_images=bad)
    splits = split_image_data(table, size, cache_dir=None)
    for name, wanted in (("train", train_images), ("val", val_images)):
        if wanted > len(splits[name]):
            raise ValueError(
                f"--{'images' if name == 'train' else 'val-images'}={wanted} but the digits "
                f"{name} split has only {len(splits[name])} images; ask for fewer."
            )
    train = _seeded_head(splits["train"], train_images, seed)
    val = _seeded_head(splits["val"], val_images, seed + 1)
    return train, val, len(class_names)


def surgered_model(setup: BenchSetup, setting: str) -> nn.Module:
    """A fresh copy of the pretrained backbone after this setting's surgery (same new head)."""
    torch.manual_seed(setup.args.seed)  # the new head's initialisation
    model = copy.deepcopy(setup.pristine)
    return apply_surgery(model, setup.num_classes, trainable_blocks=SETTINGS[setting])


def _normalise(batch: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    return (batch.float() / 255.0 - mean) / std


def _frozen_bn_eval(model: nn.Module) -> None:
    # As Trainer does: BN layers with frozen parameters keep their pretrained statistics.
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            params = list(module.parameters(recurse=False))
            if params and not any(p.requires_grad for p in params):
                module.eval()


def warm_up(model: nn.Module, data: ImageData, batch_size: int) -> None:
    """One forward/backward of a throwaway copy: first-call allocations and kernel choice."""
    cfg = model.backbone_cfg
    mean = torch.tensor(cfg.mean).view(1, -1, 1, 1)
    std = torch.tensor(cfg.std).view(1, -1, 1, 1)
    scratch = copy.deepcopy(model).train()
    _frozen_bn_eval(scratch)
    logits = scratch(_normalise(data.images[:batch_size], mean, std))
    loss = nn.functional.cross_entropy(logits, data.labels[:batch_size])
    if loss.requires_grad:
        loss.backward()
    del scratch, logits, loss


# --------------------------------------------------------------------------- the two loops


def plain_optimizer(model: nn.Module, args: argparse.Namespace) -> torch.optim.Optimizer:
    """SGD with momentum, one group for the pretrained and one for the new (head) parameters."""
    new_names = new_parameter_names(model)
    groups: dict[str, list[nn.Parameter]] = {"pretrained": [], "new": []}
    for name, param in model.named_parameters():
        if param.requires_grad:
            groups["new" if name in new_names else "pretrained"].append(param)
    lrs = {"pretrained": args.lr_pretrained, "new": args.lr_new}
    return torch.optim.SGD(
        [{"params": p, "lr": lrs[k]} for k, p in groups.items() if p], lr=args.lr_pretrained,
        momentum=0.9,
    )


def run_plain(model: nn.Module, setup: BenchSetup) -> dict[str, Any]:
    """The hand-written reference loop: no cache, no callbacks, no validation."""
    args, train = setup.args, setup.train
    cfg = model.backbone_cfg
    mean = torch.tensor(cfg.mean).view(1, -1, 1, 1)
    std = torch.tensor(cfg.std).view(1, -1, 1, 1)
    optimizer = plain_optimizer(model, args)
    epoch_seconds, losses = [], []
    for epoch in range(args.epochs):
        # Same per-epoch seeding and shuffling as Trainer, so both see the same batches.
        torch.manual_seed(args.seed * 1000 + epoch)
        generator = torch.Generator().manual_seed(args.seed * 1000 + epoch)
        order = torch.randperm(len(train), generator=generator)
        model.train()
        _frozen_bn_eval(model)
        loss_sum = 0.0
        started = time.perf_counter()
        for start in range(0, len(order), args.batch_size):
            idx = order[start : start + args.batch_size]
            logits = model(_normalise(train.images[idx], mean, std))
            loss = nn.functional.cross_entropy(logits, train.labels[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            loss_sum += loss.item() * len(idx)
        epoch_seconds.append(time.perf_counter() - started)
        losses.append(loss_sum / len(train))
    return {"epoch_seconds": epoch_seconds, "final_train_loss": losses[-1]}


def time_cache_build(model: nn.Module, setup: BenchSetup) -> float | None:
    """Seconds to build the frozen-prefix cache (train + val), as Trainer does in ``fit``."""
    boundary = frozen_prefix_length(model)
    if boundary == 0:
        return None
    started = time.perf_counter()
    for data in (setup.train, setup.val):
        prefix_activations(model, data, boundary, CACHE_BATCH_SIZE, torch.device("cpu"))
    return time.perf_counter() - started


def run_ours(model: nn.Module, setup: BenchSetup, use_cache: bool) -> dict[str, Any]:
    """``Trainer.fit`` as the pipeline calls it (best-model callback, validation each epoch)."""
    args = setup.args
    config = TrainConfig(
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr_pretrained=args.lr_pretrained,
        lr_new=args.lr_new,
        momentum=0.9,
        schedule="constant",  # the plain loop keeps its learning rates fixed too
        seed=args.seed,
        device="cpu",
        use_cache=use_cache,
        progress=False,
    )
    trainer = Trainer(
        model, config, None, default_callbacks(config), new_parameter_names(model)
    )
    started = time.perf_counter()
    history = trainer.fit(setup.train, setup.val)
    fit_seconds = time.perf_counter() - started
    epoch_seconds = [float(s) for s in history["seconds"]]
    return {
        "epoch_seconds": epoch_seconds,
        "final_train_loss": float(history["train_loss"].iloc[-1]),
        "fit_seconds": fit_seconds,
        # cache build + validation + best-model copies: everything fit() does besides epochs
        "fit_overhead_seconds": fit_seconds - sum(epoch_seconds),
    }


# --------------------------------------------------------------------------- one variant


def run_variant(setup: BenchSetup, setting: str, loop: str, use_cache: bool) -> dict[str, Any]:
    """Fresh model, warm-up, (cache build timing,) then the timed run with its memory peak."""
    model = surgered_model(setup, setting)
    warm_up(model, setup.train, setup.args.batch_size)
    cache_seconds = time_cache_build(model, setup) if use_cache else None
    release_memory()
    exact_peak = reset_peak_rss()
    baseline = current_rss_mb() if exact_peak else peak_rss_mb()
    if loop == "plain":
        timings = run_plain(model, setup)
    else:
        timings = run_ours(model, setup, use_cache)
    peak_delta = max(0.0, peak_rss_mb() - baseline)
    n_train = len(setup.train)
    seconds = sum(timings["epoch_seconds"]) / len(timings["epoch_seconds"])
    result = {
        "variant": f"{setting} / {loop}" + (" + cache" if use_cache else ""),
        "setting": setting,
        "trainable_blocks": SETTINGS[setting],
        "loop": loop,
        "use_cache": use_cache,
        "cached_units": frozen_prefix_length(model) if use_cache else 0,
        "trainable_params": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "seconds_per_epoch": seconds,
        "images_per_s": n_train / seconds,
        "cache_build_seconds": cache_seconds,
        "peak_rss_delta_mb": peak_delta,
        "peak_rss_exact": exact_peak,
        **timings,
    }
    del model
    release_memory()
    return result


def best_of(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The fastest repeat (least disturbed by other load); memory: the largest peak seen."""
    best = dict(min(runs, key=lambda r: r["seconds_per_epoch"]))
    best["peak_rss_delta_mb"] = max(r["peak_rss_delta_mb"] for r in runs)
    best["repeats_seconds_per_epoch"] = [r["seconds_per_epoch"] for r in runs]
    return best
