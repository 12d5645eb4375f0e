"""Decoded images too large for RAM: uint8 ``.npy`` shards on disk, read batch by batch.

``decode_to_shards`` decodes a manifest table one file at a time into shards of about
``SHARD_BYTES`` each; ``MappedImages`` is the [N, 3, H, W] array over them. Indexing it (an int,
a slice, an index tensor or array) returns a uint8 tensor of just those rows, read through a
memory map that is closed after the read, so resident memory stays one batch, whatever N.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from ft_pipelines.core.data.decoding import PROGRESS_MIN_ROWS, decode_one
from ft_pipelines.core.data.manifest import read_checked, verify_manifest

logger = logging.getLogger(__name__)

SHARD_BYTES = 64 * 2**20  # decoded bytes per shard: bounds the memory used while writing one
_DONE = "shards.json"      # written last: a folder without it is an interrupted write


class MappedImages:
    """uint8 images [N, 3, size, size] in ``.npy`` shards; ``rows`` picks (and orders) them."""

    def __init__(self, directory: Path, rows: np.ndarray | None = None) -> None:
        info = json.loads((directory / _DONE).read_text())
        self.directory = directory
        self.count, self.size, self.rows_per_shard = info["count"], info["size"], info["per_shard"]
        self.rows = np.arange(self.count) if rows is None else np.asarray(rows, dtype=np.int64)

    # what code written for a uint8 image tensor asks before reading rows (dtype, ndim, shape)
    dtype = torch.uint8
    ndim = 4

    @property
    def shape(self) -> tuple[int, int, int, int]:
        return (len(self.rows), 3, self.size, self.size)

    def __len__(self) -> int:
        return len(self.rows)

    def take(self, positions: np.ndarray) -> MappedImages:
        """A view of some rows (nothing read): how splits and subsets stay on disk."""
        view = object.__new__(MappedImages)
        view.__dict__.update(self.__dict__, rows=self.rows[np.asarray(positions)])
        return view

    def __getitem__(self, key: int | slice | torch.Tensor | np.ndarray) -> torch.Tensor:
        if isinstance(key, torch.Tensor):
            key = key.numpy()
        wanted = self.rows[key]
        scalar = np.ndim(wanted) == 0
        wanted = np.atleast_1d(wanted)
        out = np.empty((len(wanted), 3, self.size, self.size), dtype=np.uint8)
        shard_of = wanted // self.rows_per_shard
        for shard in np.unique(shard_of):
            picked = np.flatnonzero(shard_of == shard)
            # opened per read and dropped after: the map's pages leave this process's RSS
            mapped = np.load(self.directory / f"{shard:05d}.npy", mmap_mode="r")
            out[picked] = mapped[wanted[picked] - shard * self.rows_per_shard]
            del mapped
        tensor = torch.from_numpy(out)
        return tensor[0] if scalar else tensor

    def numpy(self) -> np.ndarray:
        """Every row in RAM: only for sets that fit (calibration, small held-out splits)."""
        return self[np.arange(len(self))].numpy()


def decode_to_shards(table: pd.DataFrame, size: int, directory: Path,
                     progress: bool = True) -> MappedImages:
    """Decode each manifest row's file (hash-checked) into shards under ``directory``."""
    if (directory / _DONE).exists():
        verify_manifest(table)  # the shards are reused: the files must still be the ingested ones
        logger.info("Reusing decoded image shards in %s", directory)
        return MappedImages(directory)
    verify_manifest(table)  # one pass naming every moved file, before the long decode
    partial = directory.with_name(directory.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    per_shard = max(1, SHARD_BYTES // (3 * size * size))
    buffer = np.empty((min(per_shard, len(table)), 3, size, size), dtype=np.uint8)
    rows = zip(table["origin"].tolist(), table["sha256"].tolist(), strict=True)
    quiet = not progress or len(table) < PROGRESS_MIN_ROWS
    for index, (origin, sha256) in enumerate(tqdm(rows, total=len(table), disable=quiet,
                                                 desc=f"decode {size}px", unit="img")):
        data = read_checked(origin, sha256)
        if isinstance(data, str):
            raise FileNotFoundError(f"Image file {origin} {data}: restore it or ingest again.")
        buffer[index % per_shard] = decode_one(data, size).transpose(2, 0, 1)
        if index % per_shard == per_shard - 1 or index == len(table) - 1:
            filled = index % per_shard + 1
            np.save(partial / f"{index // per_shard:05d}.npy", buffer[:filled])
    info = {"count": len(table), "size": size, "per_shard": per_shard}
    (partial / _DONE).write_text(json.dumps(info))
    shutil.rmtree(directory, ignore_errors=True)
    partial.rename(directory)  # the whole folder appears at once
    logger.info("Decoded %d images into shards at %s", len(table), directory)
    return MappedImages(directory)
