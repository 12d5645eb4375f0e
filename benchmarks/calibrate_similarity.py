"""Similarity signals of reference data sets on a backbone: the numbers behind the thresholds.

    python benchmarks/calibrate_similarity.py --size 96 --images 300

Prints (and writes as JSON with --out) the median BN-statistics divergence, LogME and LEEP of:
natural photo crops (scikit-image sample photos), LFW faces, digits and uniform noise. Use it to
recalibrate ``strategy.similarity.max_divergence`` for another backbone or resolution: put the
threshold between what you consider similar and dissimilar (docs/strategy.md).
"""

from __future__ import annotations

import argparse
import json
import logging

import numpy as np
import skimage.data
import torch

from ft_pipelines.core.data import ImageData, build_images_table, decode_images, load_records
from ft_pipelines.core.models import load_backbone
from ft_pipelines.core.similarity import similarity_report

PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "hubble_deep_field")


def natural_crops(count: int, size: int, seed: int = 0) -> ImageData:
    """Random square crops of scikit-image's colour photos, labelled by source photo."""
    rng = np.random.default_rng(seed)
    crops, labels = [], []
    for i in range(count):
        label = i % len(PHOTOS)
        photo = torch.from_numpy(getattr(skimage.data, PHOTOS[label])()[..., :3].copy())
        side = int(rng.integers(64, min(photo.shape[:2])))
        top = int(rng.integers(0, photo.shape[0] - side + 1))
        left = int(rng.integers(0, photo.shape[1] - side + 1))
        crop = photo[top:top + side, left:left + side].permute(2, 0, 1)[None].float()
        crop = torch.nn.functional.interpolate(crop, size=(size, size), mode="bilinear",
                                               antialias=True)
        crops.append(crop.round().clamp(0, 255).to(torch.uint8)[0])
        labels.append(label)
    return ImageData(torch.stack(crops), torch.tensor(labels))


def demo_data(source: str, count: int, size: int) -> ImageData:
    table, _, _ = build_images_table(load_records(source), {"train": 1.0, "val": 0.0,
                                                            "test": 0.0}, 0)
    table = table.sample(n=min(count, len(table)), random_state=0)
    images, labels = decode_images(table, size)
    return ImageData(images, labels)


def uniform_noise(count: int, size: int) -> ImageData:
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (count, 3, size, size), generator=generator,
                           dtype=torch.uint8)
    return ImageData(images, torch.arange(count) % 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=96)
    parser.add_argument("--images", type=int, default=300)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    model = load_backbone("bundled", input_size=args.size)
    sets = {"natural photo crops": natural_crops(args.images, args.size),
            "lfw_faces": demo_data("lfw_faces", args.images, args.size),
            "sklearn_digits": demo_data("sklearn_digits", args.images, args.size),
            "uniform noise": uniform_noise(args.images, args.size)}
    results = {}
    for name, data in sets.items():
        metrics, _ = similarity_report(model, data, {"batch_size": 100})
        results[name] = {k: metrics.get(k) for k in ("bn_divergence", "logme", "leep")}
        print(f"{name:22s} divergence {metrics['bn_divergence']:.3f}  "
              f"LogME {metrics['logme']:.3f}  LEEP {metrics.get('leep', float('nan')):.3f}")
    if args.out:
        with open(args.out, "w") as handle:
            json.dump({"size": args.size, "images": args.images, "results": results}, handle,
                      indent=2)


if __name__ == "__main__":
    main()
