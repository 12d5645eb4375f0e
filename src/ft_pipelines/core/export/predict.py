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

from ft_pipelines.core.data.sources import IMAGE_EXTENSIONS, _as_bytes
from ft_pipelines.core.export.runtime import OnnxRunner

# Ingestion's own validation (verify + full decode) and decoding (EXIF transpose, 16-bit
# rescale, CMYK/palette -> RGB, antialiased bilinear resize), so a file predicts exactly as it
# would have trained; the served MLflow model runs the same file.
from ft_pipelines.serving.image_classifier import classify, decode_for_model

logger = logging.getLogger(__name__)

PREDICTION_COLUMNS = ["file", "predicted_class", "probability", "top5", "error"]
MAX_LISTED = 20

Item = tuple[str, bytes | str]  # (file, image bytes) or (file, why it could not be read)


def iter_folder(root: Path) -> Iterator[Item]:
    """Image files under ``root`` at any depth (sorted; hidden files and folders and files
    without an image extension skipped, as in ingestion), read one at a time."""
    skipped = []
    for path in sorted(root.rglob("*")):
        relative = path.relative_to(root)
        if not path.is_file():
            continue
        if any(part.startswith(".") for part in relative.parts) or (
                path.suffix.lower() not in IMAGE_EXTENSIONS):
            skipped.append(relative.as_posix())
            continue
        try:
            yield relative.as_posix(), path.read_bytes()
        except OSError as error:
            yield relative.as_posix(), f"cannot read the file ({error})"
    if skipped:
        logger.info("Ignored %d hidden or non-image files under %s: %s", len(skipped), root,
                    ", ".join(skipped[:MAX_LISTED]))


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
                yield label, _as_bytes(value)
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
    if resolved.suffix.lower() == ".parquet":
        return iter_parquet(resolved, image_column, file_column)
    if resolved.suffix.lower() in IMAGE_EXTENSIONS:
        return iter([(resolved.name, resolved.read_bytes())])
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
        for (name, _), row in zip(batch, classify(decoded, runner.logits, class_names),
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
