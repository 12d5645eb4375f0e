"""Labelling new images with an exported model: files found recursively (or rows of a parquet
table), decoded exactly as ingestion decodes them, classified batch by batch.

A file that cannot be read gets a row with its ``error``; it never stops the batch. Only one
batch of decoded images is in memory at a time.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from itertools import islice
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.parquet as pq

from ft_pipelines.core.data.sources import (
    IMAGE_EXTENSIONS,
    NotAnImageFile,
    _as_bytes,
    _kind,
    read_image_file,
)
from ft_pipelines.core.export.runtime import OnnxRunner

# Ingestion's own validation (verify + full decode) and decoding (EXIF transpose, 16-bit
# rescale, CMYK/palette -> RGB, antialiased bilinear resize), so a file predicts exactly as it
# would have trained; the served MLflow model runs the same file.
from ft_pipelines.serving.image_classifier import classify, decode_for_model

logger = logging.getLogger(__name__)

PREDICTION_COLUMNS = ["file", "predicted_class", "probability", "top5", "error"]
MAX_LISTED = 20

Item = tuple[str, bytes | str]  # (file, image bytes) or (file, why it could not be read)


def _read_item(path: Path, name: str) -> Item:
    if path.suffix.lower() not in IMAGE_EXTENSIONS:
        return name, (f"not an image type predict reads ({path.suffix or 'no extension'}; it "
                      f"reads {', '.join(sorted(IMAGE_EXTENSIONS))}): convert it to one of them")
    try:
        return name, read_image_file(path)
    except (OSError, NotAnImageFile) as error:
        return name, f"cannot read the file ({error})"


def iter_folder(root: Path) -> Iterator[Item]:
    """Every file under ``root`` at any depth (sorted; hidden files and folders skipped, as in
    ingestion), read one at a time. A file predict cannot read (another type, a FIFO, a
    device) gets a row with its error rather than no row."""
    hidden = []
    for path in sorted(root.rglob("*")):
        relative = path.relative_to(root)
        if any(part.startswith(".") for part in relative.parts):
            hidden.append(relative.as_posix())
        elif not path.is_dir():
            yield _read_item(path, relative.as_posix())
    if hidden:
        logger.info("Ignored %d hidden files or folders under %s: %s", len(hidden), root,
                    ", ".join(hidden[:MAX_LISTED]))


def iter_parquet(path: Path, image_column: str, file_column: str = "file",
                 rows_per_read: int = 256) -> Iterator[Item]:
    """Rows of a parquet table, read ``rows_per_read`` at a time: the image bytes in
    ``image_column`` (raw bytes or ``{"bytes": ...}``), the name in ``file_column`` when the
    table has one, else ``<path>:<row>`` as ingestion names parquet rows."""
    table = pq.ParquetFile(path)
    columns = table.schema_arrow.names
    if image_column not in columns:
        raise ValueError(f"Column {image_column!r} not found in {str(path)!r}; columns present: "
                         f"{columns}. Set predict.image_column to one of them.")
    wanted = [image_column] + ([file_column] if file_column in columns else [])
    row = 0
    for batch in table.iter_batches(batch_size=rows_per_read, columns=wanted):
        values = batch.to_pydict()
        names = values.get(file_column) or [None] * batch.num_rows
        for value, name in zip(values[image_column], names, strict=True):
            label = str(name) if name is not None else f"{path}:{row}"
            try:
                yield label, _as_bytes(value, "predict.image_column")
            except ValueError as error:
                yield label, str(error)
            row += 1


def iter_inputs(path: str | Path | None, image_column: str = "image",
                file_column: str = "file") -> Iterator[Item]:
    """What ``predict.path`` names: a folder (searched recursively), a parquet table, or one
    image file."""
    if path is None or str(path).strip() == "":
        raise ValueError("Set predict.path to an image folder, a parquet file or an image: "
                         'kedro run --pipelines=predict --params="predict.path=<path>"')
    resolved = Path(path).expanduser()
    if not resolved.exists():
        raise FileNotFoundError(f"predict.path {str(resolved)!r} does not exist")
    if resolved.is_dir():
        return iter_folder(resolved)
    if not resolved.is_file():  # follows symlinks: a FIFO or a link to /dev/zero, never read
        mode = resolved.stat().st_mode
        raise NotAnImageFile(f"predict.path {str(resolved)!r} is {_kind(mode)}, not an image "
                             "file, a folder or a .parquet table: point it at one of those")
    if resolved.suffix.lower() == ".parquet":
        return iter_parquet(resolved, image_column, file_column)
    if resolved.suffix.lower() in IMAGE_EXTENSIONS:
        return iter([_read_item(resolved, resolved.name)])
    raise ValueError(f"predict.path {str(resolved)!r} is neither a folder, a .parquet table nor "
                     f"an image ({sorted(IMAGE_EXTENSIONS)})")


def _batches(items: Iterable[Item], size: int) -> Iterator[list[Item]]:
    iterator = iter(items)
    while batch := list(islice(iterator, size)):
        yield batch


def predict_rows(runner: OnnxRunner, items: Iterable[Item], batch_size: int = 64
                 ) -> Iterator[dict[str, Any]]:
    """One row per item, in input order: the top class, its probability, the top five
    (``[{"class", "probability"}]``, most likely first) and ``error`` (None when readable)."""
    if batch_size < 1:
        raise ValueError(f"predict.batch_size must be >= 1, got {batch_size}")
    size, class_names = runner.model.input_size, runner.model.class_names
    for batch in _batches(items, batch_size):
        decoded = [data if isinstance(data, str) else decode_for_model(data, size)
                   for _, data in batch]
        for (name, _), row in zip(batch, classify(decoded, runner.logits, class_names,
                                                 runner.model.temperature),
                                  strict=True):
            yield {"file": name, **row}


def predictions_table(rows: Iterable[dict[str, Any]]) -> pd.DataFrame:
    table = pd.DataFrame(list(rows), columns=PREDICTION_COLUMNS)
    if table.empty:
        raise ValueError("predict.path holds no image files (searched recursively for "
                         f"{sorted(IMAGE_EXTENSIONS)}): nothing to label")
    failed = table["error"].notna()
    if failed.any():
        logger.warning("%d of %d files could not be read (see their error column): %s",
                       int(failed.sum()), len(table),
                       ", ".join(table.loc[failed, "file"].head(MAX_LISTED)))
    logger.info("Labelled %d files", int((~failed).sum()))
    return table
