"""Decoded images as the models consume them: ``ImageData``, its splits and subsets."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ft_pipelines.core.data.decoding import (
    cached_decode,
    decode_cache_key,
    decode_images,
)
from ft_pipelines.core.data.manifest import is_manifest
from ft_pipelines.core.data.shards import MappedImages, decode_to_shards
from ft_pipelines.core.data.sources import load_records
from ft_pipelines.core.data.validation import validate_records


@dataclass
class ImageData:
    """Decoded images (uint8 [N, 3, H, W]) and their int64 labels [N].

    ``images`` is a tensor, or for a manifest table a ``MappedImages`` (on-disk shards): both
    answer ``len``, slices and index tensors with a uint8 tensor of those rows.
    """

    images: torch.Tensor | MappedImages
    labels: torch.Tensor

    def __len__(self) -> int:
        return int(self.labels.shape[0])


def split_image_data(table: pd.DataFrame, size: int, cache_dir: str | Path | None
                     ) -> dict[str, ImageData]:
    """Decode the ``images`` table once (cached on disk) and cut it by split.

    A manifest table decodes into on-disk shards (its files hash-checked first), and each split
    is a view of them: no whole-data tensor in RAM.
    """
    splits = table["split"].to_numpy()
    if is_manifest(table):
        images = _manifest_shards(table, size, cache_dir)
        labels = torch.tensor(table["label"].to_numpy(dtype=np.int64, copy=True))
        return {name: ImageData(images.take(np.flatnonzero(splits == name)),
                                labels[torch.from_numpy(splits == name)])
                for name in ("train", "val", "test")}
    if cache_dir:
        images, labels = cached_decode(table, size, cache_dir)
    else:
        images, labels = decode_images(table, size)
    return {name: ImageData(images[torch.from_numpy(splits == name)],
                            labels[torch.from_numpy(splits == name)])
            for name in ("train", "val", "test")}


def _manifest_shards(table: pd.DataFrame, size: int, cache_dir: str | Path | None
                     ) -> MappedImages:
    # without a cache folder the shards still go to disk (a temporary one): RAM stays bounded
    directory = Path(cache_dir).expanduser() if cache_dir else Path(tempfile.mkdtemp())
    key = decode_cache_key(table, size)
    return decode_to_shards(table, int(size), directory / f"decoded_{int(size)}px_{key[:24]}")


def stratified_indices(labels: np.ndarray, max_images: int | None, seed: int
                       ) -> np.ndarray | None:
    """Sorted positions of at most ``max_images`` labels, the same share from every class,
    deterministic for ``seed``; None when all are kept."""
    if not max_images or len(labels) <= max_images:
        return None
    generator = np.random.default_rng(seed)
    keep = []
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        count = max(1, round(len(members) * max_images / len(labels)))
        keep.extend(generator.choice(members, size=min(count, len(members)), replace=False))
    return np.sort(keep)


def stratified_subset(data: ImageData, max_images: int | None, seed: int) -> ImageData:
    """At most ``max_images``, the same share from every class, deterministic for ``seed``."""
    index = stratified_indices(data.labels.numpy(), max_images, seed)
    if index is None:
        return data
    index = torch.as_tensor(index)
    return ImageData(data.images[index], data.labels[index])


def split_subset(table: pd.DataFrame, split: str, size: int, cache_dir: str | Path | None,
                 max_images: int | None, seed: int) -> ImageData:
    """``stratified_subset(split_image_data(table, ...)[split], max_images, seed)`` (the same
    images, in the same order) that decodes only the chosen rows: a stage that reads a sample
    at its own size does not decode (or shard) the whole data set for it. When nothing is left
    out, the whole table is decoded as other stages do, so their decode cache is shared."""
    rows = table[table["split"].to_numpy() == split]
    index = stratified_indices(rows["label"].to_numpy(dtype=np.int64), max_images, seed)
    if index is None:
        return split_image_data(table, size, cache_dir)[split]
    return split_image_data(rows.iloc[index], size, cache_dir)[split]


def load_reference_images(folder: str, size: int) -> tuple[torch.Tensor, np.ndarray]:
    """A source-domain sample (image folder) decoded at ``size``; labels are folder indices."""
    records, _ = validate_records(load_records("image_folder", folder), "skip")
    names = sorted({r.label_name for r in records})
    table = pd.DataFrame({"image": [r.image_bytes for r in records],
                          "label": [names.index(r.label_name) for r in records]})
    images, labels = decode_images(table, size)
    return images, labels.numpy()
