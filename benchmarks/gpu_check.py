"""GPU check (issue 10): Trainer vs a plain AMP loop on the same model, data and batch, in bf16.

Run through ``benchmarks/gpu_check.sh`` (it runs the default chain at 224 px first). Prints, as
JSON: training images/s for ``Trainer`` and for a hand-written autocast loop (goal: Trainer >=
0.9x plain), inference images/s (batch 256, synchronised), and top-1 of the newest
``finetuned_model`` on the test split. Needs CUDA; exits with status 2 without it.
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import sys
import time
from pathlib import Path

import pandas as pd
import torch
from torch import nn

from ft_pipelines.core.data import split_image_data
from ft_pipelines.core.evaluation import measure_throughput, predict
from ft_pipelines.core.models import (
    create_backbone,
    freeze_all_but,
    load_model_file,
    newest_artifact,
    replace_head,
)
from ft_pipelines.core.training import TrainConfig, Trainer
from ft_pipelines.core.utils import normalise, resolve_runtime

logger = logging.getLogger("gpu_check")


def newest(folder: Path) -> Path:
    return sorted(folder.iterdir())[-1] / folder.name


def plain_amp_epoch(model: nn.Module, images: torch.Tensor, labels: torch.Tensor,
                    batch_size: int, device: torch.device) -> float:
    """images/s of a textbook bf16 autocast loop (SGD, cross-entropy, channels_last)."""
    model.to(device).to(memory_format=torch.channels_last).train()
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.01,
                                momentum=0.9)
    cfg = model.backbone_cfg
    torch.cuda.synchronize(device)
    started = time.perf_counter()
    for start in range(0, len(labels), batch_size):
        x = images[start:start + batch_size].pin_memory().to(device, non_blocking=True)
        x = normalise(x, cfg.mean, cfg.std).contiguous(memory_format=torch.channels_last)
        y = labels[start:start + batch_size].to(device, non_blocking=True)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = nn.functional.cross_entropy(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    torch.cuda.synchronize(device)
    return len(labels) / (time.perf_counter() - started)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", default="data", help="the default run's data folder")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--batch-size", type=int, default=128)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO)
    if not torch.cuda.is_available():
        logger.error("No CUDA device visible to torch %s: nothing measured.", torch.__version__)
        return 2
    runtime = resolve_runtime({"device": "cuda", "precision": "bf16"})
    images = pd.read_parquet(newest(Path(args.data) / "03_primary" / "images.parquet"))
    splits = split_image_data(images, args.size, None)
    classes = int(splits["train"].labels.max()) + 1
    base = freeze_all_but(replace_head(create_backbone("bundled", input_size=args.size),
                                             classes), "all")
    config = TrainConfig(epochs=1, batch_size=args.batch_size, progress=False, device="cuda",
                         precision="bf16", use_cache=False)
    plain_amp_epoch(copy.deepcopy(base), splits["train"].images, splits["train"].labels,
                    args.batch_size, runtime.device)  # warm-up (cuDNN autotuning, allocator)
    plain = plain_amp_epoch(copy.deepcopy(base), splits["train"].images,
                            splits["train"].labels, args.batch_size, runtime.device)
    history = Trainer(copy.deepcopy(base), config).fit(splits["train"], splits["val"])
    trained = load_model_file(newest_artifact(Path(args.data) / "06_models" /
                                              "finetuned_model.safetensors"))
    with runtime.autocast():
        probs = predict(trained, splits["test"].images, trained.backbone_cfg.mean,
                        trained.backbone_cfg.std, 256, device=runtime.device)
        inference = measure_throughput(trained, (3, args.size, args.size), 256, 3, 10,
                                       device=runtime.device)
    top1 = float((probs.argmax(1) == splits["test"].labels.numpy()).mean())
    trainer_ips = float(history["images_per_s"].iloc[-1])
    result = {"device": torch.cuda.get_device_name(runtime.device), "precision": "bf16",
              "size": args.size, "train_images_per_s_trainer": trainer_ips,
              "train_images_per_s_plain_amp": plain, "trainer_vs_plain": trainer_ips / plain,
              "inference": inference, "top1_finetuned": top1}
    json.dump(result, sys.stdout, indent=2, default=str)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
