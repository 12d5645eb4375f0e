"""Decoding the ``images`` table into a compact uint8 tensor, and the on-disk decode cache."""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from ft_pipelines.core.utils import atomic_write

# numpy/Pillow only, shared with predict and the served MLflow model: one decoding everywhere
from ft_pipelines.serving.image_classifier import decode_one

logger = logging.getLogger(__name__)

PROGRESS_MIN_ROWS = 500
_CACHE_FORMAT = "ft_pipelines.decoded_images.v1"  # bump when the cached layout changes


def decode_images(
    table: pd.DataFrame, size: int, progress: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """Decode each row's bytes once: uint8 images [N, 3, size, size] and int64 labels [N]."""
    if int(size) < 1:
        raise ValueError(f"Image size must be >= 1 pixel, got {size}.")
    for column in ("image", "label"):
        if column not in table.columns:
            raise ValueError(
                f"Images table lacks column {column!r}; columns present: {list(table.columns)}."
            )
    size = int(size)
    pixels = np.empty((len(table), size, size, 3), dtype=np.uint8)  # filled in place: one copy
    show_bar = progress and len(table) >= PROGRESS_MIN_ROWS
    rows = tqdm(table["image"].tolist(), desc=f"decode {size}px", unit="img", disable=not show_bar)
    for index, image_bytes in enumerate(rows):
        pixels[index] = decode_one(image_bytes, size)
    images = torch.from_numpy(pixels).permute(0, 3, 1, 2).contiguous()
    labels = torch.tensor(table["label"].to_numpy(dtype=np.int64, copy=True), dtype=torch.int64)
    return images, labels


def decode_cache_key(table: pd.DataFrame, size: int) -> str:
    """Hash of what the decoded tensors depend on: image ids in order, labels, size."""
    digest = hashlib.sha256(_CACHE_FORMAT.encode())
    digest.update(f"size={int(size)};n={len(table)};".encode())
    digest.update("\n".join(map(str, table["image_id"].tolist())).encode())
    digest.update(np.ascontiguousarray(table["label"].to_numpy(dtype=np.int64)).tobytes())
    return digest.hexdigest()


def cached_decode(
    table: pd.DataFrame, size: int, cache_dir: str | Path, progress: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """``decode_images``, persisted as safetensors in ``cache_dir`` and reused when it matches."""
    key = decode_cache_key(table, size)
    directory = Path(cache_dir).expanduser()
    cache_file = directory / f"decoded_{int(size)}px_{key[:24]}.safetensors"
    if cache_file.exists():
        try:
            tensors = load_file(cache_file)
            images, labels = tensors["images"], tensors["labels"]
            if images.shape == (len(table), 3, int(size), int(size)) and labels.shape == (
                len(table),
            ):
                logger.info("Reusing decoded images from %s", cache_file)
                return images, labels
            logger.warning("Decoded-image cache %s has the wrong shape: rebuilding", cache_file)
        except Exception as error:  # a damaged cache is rebuilt, never trusted
            logger.warning("Cannot read decoded-image cache %s (%s): rebuilding", cache_file, error)
    images, labels = decode_images(table, size, progress=progress)
    metadata = {"key": key, "size": str(int(size)), "format": _CACHE_FORMAT}
    atomic_write(cache_file, lambda tmp: save_file({"images": images, "labels": labels}, tmp,
                                                   metadata=metadata))
    logger.info("Cached %d decoded images at %s", len(table), cache_file)
    return images, labels
