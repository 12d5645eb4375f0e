"""Memory format on CPU: NCHW (PyTorch's default) against channels_last, same model, same work.

    python benchmarks/bench_memory_format.py --threads 2 --out benchmarks/results/memory_format.json

Why the training loops put models and batches in channels_last on CPU too
(``core/utils/runtime.py``): oneDNN's depthwise and 1x1 convolutions of EfficientNet-Lite run
faster in it. Measured here on the bundled EfficientNet-Lite0 at 96 px, batch 64:
- *partial*: one SGD step of the last two blocks + head, on the cached block-4 activations
  (what partial fine-tuning trains per step with the frozen-prefix cache);
- *full*: one SGD step of the whole network (full fine-tuning, pruning recovery);
- *inference*: batch-1 latency and batch-64 throughput of the whole network in eval mode.
Images/s are the median of ``--repeats`` timed rounds of ``--steps`` steps. Run on an idle machine.
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from ft_pipelines.core.evaluation import timed_calls_ms
from ft_pipelines.core.models import load_backbone

FORMATS = {"nchw": torch.contiguous_format, "channels_last": torch.channels_last}


def tail_and_inputs(model: nn.Module, images: torch.Tensor) -> tuple[nn.Module, torch.Tensor]:
    """Blocks 5-6, head conv and a 10-class classifier; the block-4 activations they train on."""
    with torch.no_grad():
        x = model.bn1(model.conv_stem(images))
        for block in model.blocks[:5]:
            x = block(x)
    tail = nn.Sequential(model.blocks[5], model.blocks[6], model.conv_head, model.bn2,
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(1280, 10))
    return tail, x


def images_per_second(step: Callable[[], None], batch: int, steps: int, repeats: int) -> float:
    for _ in range(2):  # warm-up: oneDNN picks and caches its kernels
        step()

    def one_round() -> None:
        for _ in range(steps):
            step()

    rounds_ms = timed_calls_ms(one_round, 0, repeats)
    return statistics.median(batch * steps * 1000.0 / ms for ms in rounds_ms)


def training_rate(model: nn.Module, inputs: torch.Tensor, fmt: torch.memory_format,
                  steps: int, repeats: int) -> float:
    model = copy.deepcopy(model).train().to(memory_format=fmt)
    inputs = inputs.contiguous(memory_format=fmt)
    labels = torch.randint(0, 10, (len(inputs),), generator=torch.Generator().manual_seed(0))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)

    def step() -> None:
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(inputs), labels).backward()
        optimizer.step()

    return images_per_second(step, len(inputs), steps, repeats)


def inference(model: nn.Module, images: torch.Tensor, fmt: torch.memory_format,
              runs: int) -> dict[str, float]:
    model = copy.deepcopy(model).eval().to(memory_format=fmt)
    one = images[:1].contiguous(memory_format=fmt)
    many = images.contiguous(memory_format=fmt)
    with torch.no_grad():
        timings = timed_calls_ms(lambda: model(one), 5, runs)
        rate = images_per_second(lambda: model(many), len(many), 3, 3)
    return {"latency_ms": statistics.median(timings), "throughput": rate}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--size", type=int, default=96)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--runs", type=int, default=50, help="batch-1 latency runs")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = load_backbone("bundled", input_size=args.size)
    images = torch.randn(args.batch, 3, args.size, args.size)
    tail, activations = tail_and_inputs(model, images)
    rows = {}
    for name, fmt in FORMATS.items():
        rows[name] = {
            "partial_train_img_s": training_rate(tail, activations, fmt, args.steps * 3,
                                                 args.repeats),
            "full_train_img_s": training_rate(model, images, fmt, args.steps, args.repeats),
            **inference(model, images, fmt, args.runs),
        }
        print(name, json.dumps({k: round(v, 2) for k, v in rows[name].items()}))
    speedup = {key: rows["channels_last"][key] / rows["nchw"][key] for key in rows["nchw"]}
    speedup["latency_ms"] = 1 / speedup["latency_ms"]  # > 1: channels_last is faster
    print("channels_last speed-up", json.dumps({k: round(v, 2) for k, v in speedup.items()}))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({
            "rows": rows, "speedup": speedup, "threads": args.threads, "size": args.size,
            "batch": args.batch, "torch": torch.__version__, "cpu": platform.processor(),
            "when": time.strftime("%Y-%m-%dT%H:%M:%S%z")}, indent=2))


if __name__ == "__main__":
    main()
