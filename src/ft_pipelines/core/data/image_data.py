"""Decoded images as the models consume them: ``ImageData``, its splits and subsets."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ft_pipelines.core.data.decoding import cached_decode, decode_images
from ft_pipelines.core.data.sources import load_records
from ft_pipelines.core.data.validation import validate_records


@dataclass
class ImageData:
    """Decoded images (uint8 [N, 3, H, W]) and their int64 labels [N]."""

    images: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return int(self.labels.shape[0])


def split_image_data(table: pd.DataFrame, size: int, cache_dir: str | Path | None
                     ) -> dict[str, ImageData]:
    """Decode the ``images`` table once (cached on disk) and cut it by split."""
    if cache_dir:
        images, labels = cached_decode(table, size, cache_dir)
    else:
        images, labels = decode_images(table, size)
    splits = table["split"].to_numpy()
    return {name: ImageData(images[torch.from_numpy(splits == name)],
                            labels[torch.from_numpy(splits == name)])
            for name in ("train", "val", "test")}


def stratified_subset(data: ImageData, max_images: int | None, seed: int) -> ImageData:
    """At most ``max_images``, the same share from every class, deterministic for ``seed``."""
    if not max_images or len(data) <= max_images:
        return data
    generator = np.random.default_rng(seed)
    labels = data.labels.numpy()
    keep = []
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        count = max(1, round(len(members) * max_images / len(data)))
        keep.extend(generator.choice(members, size=min(count, len(members)), replace=False))
    index = torch.as_tensor(np.sort(keep))
    return ImageData(data.images[index], data.labels[index])


def load_reference_images(folder: str, size: int) -> tuple[torch.Tensor, np.ndarray]:
    """A source-domain sample (image folder) decoded at ``size``; labels are folder indices."""
    records, _ = validate_records(load_records("image_folder", folder), "skip")
    names = sorted({r.label_name for r in records})
    table = pd.DataFrame({"image": [r.image_bytes for r in records],
                          "label": [names.index(r.label_name) for r in records]})
    images, labels = decode_images(table, size)
    return images, labels.numpy()
