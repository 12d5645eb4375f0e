"""GPU check (issue 10): Trainer vs a plain AMP loop on the same model, data and batch, in bf16.

Run through ``benchmarks/gpu_check.sh`` (it runs the default chain at 224 px first). Prints, as
JSON: training images/s for ``Trainer`` and for a hand-written autocast loop (goal: Trainer >=
0.9x plain; both timed on a warm second epoch, synchronised), inference images/s (batch 256,
synchronised), and top-1 of the newest ``finetuned_model`` on the test split. Needs CUDA; exits
with status 2 without it. ``--device cpu --max-images 64`` runs the same code on a CPU as a
smoke test of the script (its numbers say nothing about a GPU).
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

from ft_pipelines.core.data import split_image_data, stratified_subset
from ft_pipelines.core.evaluation import measure_throughput, predict
from ft_pipelines.core.models import (
    freeze_all_but,
    load_backbone,
    load_model_file,
    newest_artifact,
    replace_head,
)
from ft_pipelines.core.training import TrainConfig, Trainer
from ft_pipelines.core.utils import Runtime, normalise, resolve_runtime

logger = logging.getLogger("gpu_check")


def newest(folder: Path) -> Path:
    return sorted(folder.iterdir())[-1] / folder.name


def plain_amp_epochs(model: nn.Module, images: torch.Tensor, labels: torch.Tensor,
                     batch_size: int, runtime: Runtime, epochs: int = 2) -> float:
    """images/s of the last of ``epochs`` epochs of a textbook autocast loop (SGD,
    cross-entropy, channels_last, pinned non-blocking copies); the first ones warm up."""
    model.to(runtime.device).to(memory_format=torch.channels_last).train()
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.01,
                                momentum=0.9)
    cfg = model.backbone_cfg
    pinned = runtime.on_gpu
    for _ in range(epochs):
        runtime.synchronize()
        started = time.perf_counter()
        for start in range(0, len(labels), batch_size):
            x = images[start:start + batch_size]
            x = (x.pin_memory() if pinned else x).to(runtime.device, non_blocking=pinned)
            x = normalise(x, cfg.mean, cfg.std).contiguous(memory_format=torch.channels_last)
            y = labels[start:start + batch_size].to(runtime.device, non_blocking=pinned)
            with runtime.autocast():
                loss = nn.functional.cross_entropy(model(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        runtime.synchronize()
        seconds = time.perf_counter() - started
    return len(labels) / seconds


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", default="data", help="the default run's data folder")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--device", default="cuda", help="cuda[:N]; cpu only to smoke-test")
    parser.add_argument("--precision", default="bf16", choices=["bf16", "fp16", "fp32"])
    parser.add_argument("--max-images", type=int, default=None,
                        help="train images timed (stratified; default: all)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        logger.error("No CUDA device visible to torch %s: nothing measured.", torch.__version__)
        return 2
    runtime = resolve_runtime({"device": args.device, "precision": args.precision})
    trained = load_model_file(newest_artifact(Path(args.data) / "06_models" /
                                              "finetuned_model.safetensors"))
    if trained.backbone_cfg.input_size != args.size:
        logger.error("The newest finetuned_model in %s is for %d px, not --size %d: run the "
                     "chain at that size first (gpu_check.sh does).", args.data,
                     trained.backbone_cfg.input_size, args.size)
        return 1
    images = pd.read_parquet(newest(Path(args.data) / "03_primary" / "images.parquet"))
    splits = split_image_data(images, args.size, None)
    train = stratified_subset(splits["train"], args.max_images, 0)
    classes = int(splits["train"].labels.max()) + 1
    base = freeze_all_but(replace_head(load_backbone("bundled", input_size=args.size),
                                       classes), "all")
    plain = plain_amp_epochs(copy.deepcopy(base), train.images, train.labels, args.batch_size,
                             runtime)
    config = TrainConfig(epochs=2, batch_size=args.batch_size, progress=False,
                         device=str(runtime.device), precision=runtime.precision,
                         use_cache=False)  # epoch 1 warms up, like the plain loop's
    history = Trainer(copy.deepcopy(base), config).fit(train, splits["val"])
    with runtime.autocast():
        probs = predict(trained, splits["test"].images, trained.backbone_cfg.mean,
                        trained.backbone_cfg.std, 256, device=runtime.device)
        inference = measure_throughput(trained, (3, args.size, args.size), 256, 3, 10,
                                       device=runtime.device)
    top1 = float((probs.argmax(1) == splits["test"].labels.numpy()).mean())
    trainer_ips = float(history["images_per_s"].iloc[-1])
    name = torch.cuda.get_device_name(runtime.device) if runtime.on_gpu else "cpu"
    result = {"device": name, "precision": runtime.precision, "size": args.size,
              "train_images": len(train), "batch_size": args.batch_size,
              "train_images_per_s_trainer": trainer_ips,
              "train_images_per_s_plain_amp": plain, "trainer_vs_plain": trainer_ips / plain,
              "inference_images_per_s": inference, "top1_finetuned": top1}
    json.dump(result, sys.stdout, indent=2, default=str)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
