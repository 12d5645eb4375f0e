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
import os
import platform
import re
import resource
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ft_pipelines.core.data import (
    ImageData,
    build_images_table,
    load_records,
    split_image_data,
    validate_records,
)
from ft_pipelines.core.models import apply_surgery, load_backbone
from ft_pipelines.core.training import (
    TrainConfig,
    Trainer,
    default_callbacks,
    frozen_prefix_length,
)
from ft_pipelines.core.training.cache import prefix_activations
from ft_pipelines.core.training.trainer import set_frozen_batchnorm_eval
from ft_pipelines.core.utils import head_parameter_names, normalise

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
MB = 1024.0 * 1024.0
ROOT = Path(__file__).resolve().parents[1]


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


def warm_up(model: nn.Module, data: ImageData, batch_size: int) -> None:
    """One forward/backward of a throwaway copy: first-call allocations and kernel choice."""
    cfg = model.backbone_cfg
    scratch = copy.deepcopy(model).train()
    set_frozen_batchnorm_eval(scratch)
    logits = scratch(normalise(data.images[:batch_size], cfg.mean, cfg.std))
    loss = nn.functional.cross_entropy(logits, data.labels[:batch_size])
    if loss.requires_grad:
        loss.backward()
    del scratch, logits, loss


# --------------------------------------------------------------------------- the two loops


def plain_optimizer(model: nn.Module, args: argparse.Namespace) -> torch.optim.Optimizer:
    """SGD with momentum, one group for the pretrained and one for the new (head) parameters."""
    new_names = head_parameter_names(model)
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
    optimizer = plain_optimizer(model, args)
    epoch_seconds, losses = [], []
    for epoch in range(args.epochs):
        # Same per-epoch seeding and shuffling as Trainer, so both see the same batches.
        torch.manual_seed(args.seed * 1000 + epoch)
        generator = torch.Generator().manual_seed(args.seed * 1000 + epoch)
        order = torch.randperm(len(train), generator=generator)
        model.train()
        set_frozen_batchnorm_eval(model)
        loss_sum = 0.0
        started = time.perf_counter()
        for start in range(0, len(order), args.batch_size):
            idx = order[start : start + args.batch_size]
            logits = model(normalise(train.images[idx], cfg.mean, cfg.std))
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
        prefix_activations(model, data, boundary, setup.args.batch_size, torch.device("cpu"))
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
        model, config, None, default_callbacks(config), head_parameter_names(model)
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


# --------------------------------------------------------------------------- summary


def _find(results: list[dict[str, Any]], setting: str, loop: str, cache: bool) -> dict | None:
    for row in results:
        if (row["setting"], row["loop"], row["use_cache"]) == (setting, loop, cache):
            return row
    return None


def add_speedups(results: list[dict[str, Any]]) -> None:
    """Speed-up of every variant over the plain loop of the same setting (plain s / variant s)."""
    for row in results:
        plain = _find(results, row["setting"], "plain", False)
        row["speedup_vs_plain"] = (
            plain["seconds_per_epoch"] / row["seconds_per_epoch"] if plain else None
        )


def check_targets(results: list[dict[str, Any]], epochs: int) -> dict[str, Any]:
    """The issue's two targets, with the measured numbers behind each verdict."""
    targets: dict[str, Any] = {}
    ours_full, plain_full = _find(results, "full", "ours", False), _find(
        results, "full", "plain", False
    )
    if ours_full and plain_full:
        ratio = ours_full["seconds_per_epoch"] / plain_full["seconds_per_epoch"]
        targets["full_trainer_over_plain"] = {
            "ratio": ratio, "max": FULL_MAX_SLOWDOWN, "met": ratio <= FULL_MAX_SLOWDOWN
        }
    for setting in ("head_only", "partial"):
        cached = _find(results, setting, "ours", True)
        uncached = _find(results, setting, "ours", False)
        if not (cached and uncached):
            continue
        per_epoch = uncached["seconds_per_epoch"] / cached["seconds_per_epoch"]
        whole_run = (epochs * uncached["seconds_per_epoch"]) / (
            epochs * cached["seconds_per_epoch"] + (cached["cache_build_seconds"] or 0.0)
        )
        entry = {"per_epoch": per_epoch, "whole_run_with_cache_build": whole_run}
        if setting == "head_only":
            entry |= {"min": HEAD_ONLY_MIN_CACHE_SPEEDUP,
                      "met": per_epoch >= HEAD_ONLY_MIN_CACHE_SPEEDUP}
        targets[f"{setting}_cache_speedup"] = entry
    targets["max_loss_difference_vs_plain"] = loss_difference(results)
    return targets


def loss_difference(results: list[dict[str, Any]]) -> float | None:
    """Largest |final train loss - the plain loop's| over all variants: ~0 when every loop
    trained the same model on the same batches (a check that the comparison is fair)."""
    gaps = []
    for row in results:
        plain = _find(results, row["setting"], "plain", False)
        if plain is not None:
            gaps.append(abs(row["final_train_loss"] - plain["final_train_loss"]))
    return max(gaps) if gaps else None


def cpu_model() -> str:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or platform.machine()
    match = re.search(r"^model name\s*:\s*(.+)$", text, re.MULTILINE)
    return match.group(1).strip() if match else platform.machine()


def environment(args: argparse.Namespace) -> dict[str, Any]:
    import timm

    return {
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "timm": timm.__version__,
        "platform": platform.platform(),
        "cpu_model": cpu_model(),
        "logical_cpus": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch_interop_threads": torch.get_num_interop_threads(),
        "requested_threads": args.threads,
    }


def _fmt(value: float | None, spec: str, suffix: str = "") -> str:
    return "–" if value is None else f"{value:{spec}}{suffix}"


def markdown_table(report: dict[str, Any]) -> str:
    """The table for docs/, with the configuration and the verdict on both targets."""
    cfg, env = report["config"], report["environment"]
    lines = [
        "<!-- generated by benchmarks/bench_training.py: do not edit by hand -->",
        f"{cfg['images']} training images (scikit-learn digits) at {cfg['size']} px, "
        f"batch size {cfg['batch_size']}, {cfg['epochs']} epochs, best of {cfg['repeats']}, "
        f"{env['torch_threads']} threads; bundled EfficientNet-Lite0; torch {env['torch']}; "
        f"{env['cpu_model']}; {env['date']}.",
        "",
        "| variant | s/epoch | images/s | speed-up vs plain | cache build (s) | peak RSS Δ (MB) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for row in report["results"]:
        lines.append(
            f"| {row['variant']} | {row['seconds_per_epoch']:.3f} | {row['images_per_s']:.1f} | "
            f"{_fmt(row['speedup_vs_plain'], '.2f', 'x')} | "
            f"{_fmt(row['cache_build_seconds'], '.2f')} | {row['peak_rss_delta_mb']:.0f} |"
        )
    lines += ["", *target_lines(report["targets"])]
    return "\n".join(lines) + "\n"


def target_lines(targets: dict[str, Any]) -> list[str]:
    lines = []
    full = targets.get("full_trainer_over_plain")
    if full:
        verdict = "met" if full["met"] else "NOT met"
        lines.append(
            f"- Full fine-tuning, Trainer / plain loop: {full['ratio']:.3f} "
            f"(target <= {full['max']:.2f}: {verdict})."
        )
    for setting, label in (("head_only", "Head-only"), ("partial", "Partial")):
        entry = targets.get(f"{setting}_cache_speedup")
        if not entry:
            continue
        goal = ""
        if "min" in entry:
            goal = f" (target >= {entry['min']:.0f}x: {'met' if entry['met'] else 'NOT met'})"
        lines.append(
            f"- {label}, cache speed-up per epoch: {entry['per_epoch']:.1f}x{goal}; "
            f"over the whole run including the cache build: "
            f"{entry['whole_run_with_cache_build']:.1f}x."
        )
    gap = targets.get("max_loss_difference_vs_plain")
    if gap is not None:
        lines.append(f"- Largest final-loss difference from the plain loop: {gap:.2e} "
                     "(same model, same batches).")
    return lines


# --------------------------------------------------------------------------- CLI


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=512, help="training images (digits)")
    parser.add_argument("--val-images", type=int, default=64, help="validation images")
    parser.add_argument("--size", type=int, default=96, help="input size in pixels")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    parser.add_argument("--repeats", type=int, default=1, help="runs per variant; best is kept")
    parser.add_argument("--lr-pretrained", type=float, default=0.01)
    parser.add_argument("--lr-new", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--only", nargs="+", choices=sorted(SETTINGS), default=None,
        help="run only these settings (default: all three)",
    )
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/training.json")
    parser.add_argument("--markdown", type=Path, default=None, help="write the table here")
    args = parser.parse_args(argv)
    for name in ("images", "val_images", "size", "epochs", "batch_size", "threads", "repeats"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1")
    return args


def run_all(setup: BenchSetup) -> list[dict[str, Any]]:
    """Every variant once per round; rounds repeat so that load drift hits all variants alike."""
    args = setup.args
    chosen = [v for v in VARIANTS if not args.only or v[0] in args.only]
    runs: dict[tuple[str, str, bool], list[dict[str, Any]]] = {v: [] for v in chosen}
    for repeat in range(args.repeats):
        for variant in chosen:
            run = run_variant(setup, *variant)
            runs[variant].append(run)
            logger.info(
                "%-26s round %d: %.3f s/epoch, %.1f images/s, peak RSS +%.0f MB",
                run["variant"], repeat + 1, run["seconds_per_epoch"], run["images_per_s"],
                run["peak_rss_delta_mb"],
            )
    results = [best_of(runs[v]) for v in chosen]
    add_speedups(results)
    return results


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s: %(message)s")
    logger.setLevel(logging.INFO)
    torch.set_num_threads(args.threads)
    train, val, num_classes = load_digits(args.size, args.images, args.val_images, args.seed)
    pristine = load_backbone("bundled", input_size=args.size)
    setup = BenchSetup(pristine, train, val, num_classes, args)
    logger.info("Data: %d train / %d val images at %d px", len(train), len(val), args.size)
    results = run_all(setup)
    report = {
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "environment": environment(args),
        "results": results,
        "targets": check_targets(results, args.epochs),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    table = markdown_table(report)
    if args.markdown is not None:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text(table)
    logger.info("Results written to %s\n\n%s", args.out, table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
