"""Image sources: every labelled image of a source, as encoded bytes (not yet validated).

Sources (``ingestion.source``) are a registry (``DATA_SOURCES``): a name, a loader and whether
it reads ``ingestion.path``; the parameter schema accepts exactly the registered names. To add
one: a loader and one ``register_data_source(...)`` line (docs/architecture.md, "How to add").

- ``sklearn_digits``: scikit-learn's ``load_digits`` (1,797 real 8x8 digits, 10 classes).
- ``lfw_faces``: scikit-image's ``lfw_subset`` (200 real 25x25 photos: faces, non-faces).
- ``image_folder``: ``ingestion.path`` holds one sub-folder per class.
- ``parquet``: ``ingestion.path`` is a table with an image-bytes column and a label column.

Every image travels as its encoded bytes (PNG for the bundled demos), so the ``images`` table is
self-contained; ``decode_images`` / ``cached_decode`` turn it into a compact uint8 tensor.
"""

from __future__ import annotations

import hashlib
import io
import logging
import math
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image

from ft_pipelines.core.data.settings import (
    DataSource,
    IngestionParams,
    data_source,
    register_data_source,
)

logger = logging.getLogger(__name__)

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"})
MAX_LISTED = 20  # offending items shown in one error message; the rest are counted
# Bytes read from one image file at most: far above any photo (a 100 MP 16-bit TIFF is ~600 MB
# uncompressed, ~200 MB as a file), far below what a device file would feed forever.
MAX_IMAGE_FILE_BYTES = 256 * 2**20
_KINDS = ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
          (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
          (stat.S_ISSOCK, "a socket"))


@dataclass(frozen=True)
class ImageRecord:
    """One labelled image as encoded bytes; ``origin`` is a file path or ``source:index``."""

    image_bytes: bytes = field(repr=False)
    label_name: str
    origin: str


def image_id_of(image_bytes: bytes) -> str:
    """Stable id of an image: the first 16 hex characters of the sha256 of its bytes."""
    return hashlib.sha256(image_bytes).hexdigest()[:16]


class NotAnImageFile(ValueError):
    """A path that is not a regular file of a readable size (a FIFO, a device, a huge file)."""


def _kind(mode: int) -> str:
    return next((kind for test, kind in _KINDS if test(mode)), "not a regular file")


def read_image_file(path: str | Path, max_bytes: int = MAX_IMAGE_FILE_BYTES) -> bytes:
    """The bytes of one image file. Anything that is not a regular file once symlinks are
    followed (a FIFO that would block forever, ``/dev/zero`` that never ends) is refused without
    reading from it, and so is a file over ``max_bytes``."""
    path = Path(path)
    mode = os.stat(path).st_mode  # follows symlinks: a .png link to /dev/zero is a device
    if not stat.S_ISREG(mode):
        raise NotAnImageFile(f"not a regular file ({_kind(mode)}); only image files are read")
    # O_NONBLOCK: had it been swapped for a FIFO since the stat, opening still returns at once
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(handle.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise NotAnImageFile(f"not a regular file ({_kind(info.st_mode)})")
        data = handle.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise NotAnImageFile(f"larger than {max_bytes:,} bytes, more than an image file "
                             "holds; convert or resize it")
    return data


def load_records(source: str, path: str | Path | None = None, settings: Any = None
                 ) -> list[ImageRecord]:
    """Load every labelled image of ``source`` as encoded bytes (not yet validated).
    ``settings``: the ``ingestion`` block (a parquet table's column names); a dict of its keys
    or None takes the schema's defaults."""
    entry = data_source(source)
    settings = settings if isinstance(settings, IngestionParams) else \
        IngestionParams.model_validate(settings or {})
    root = _existing_path(path, source) if entry.needs_path else None
    return entry.load(root, settings)


def _existing_path(path: str | Path | None, source: str) -> Path:
    if path is None or str(path).strip() == "":
        raise FileNotFoundError(
            f"ingestion.source {source!r} needs a path: set ingestion.path to the data location."
        )
    resolved = Path(path).expanduser()
    if not resolved.exists():
        raise FileNotFoundError(
            f"Data path {str(resolved)!r} does not exist: fix ingestion.path "
            f"(used by ingestion.source {source!r})."
        )
    return resolved


def _encode_png(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def _to_uint8(pixels: np.ndarray, max_value: float) -> np.ndarray:
    scaled = np.asarray(pixels, dtype=np.float64) * (255.0 / max_value)
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


def _load_sklearn_digits() -> list[ImageRecord]:
    from sklearn.datasets import load_digits

    digits = load_digits()
    pixels = _to_uint8(digits.images, max_value=16.0)  # digits are 0..16 grey levels
    return [
        ImageRecord(_encode_png(image), str(int(target)), f"sklearn_digits:{index}")
        for index, (image, target) in enumerate(zip(pixels, digits.target, strict=True))
    ]


def _load_lfw_faces() -> list[ImageRecord]:
    from skimage.data import lfw_subset

    images = np.asarray(lfw_subset())
    # The docstring says uint8 but scikit-image 0.26 returns floats in 0..1: accept both.
    pixels = images if images.dtype == np.uint8 else _to_uint8(images, max_value=1.0)
    num_faces = len(pixels) // 2  # documented order: the first half faces, then non-faces
    return [
        ImageRecord(
            _encode_png(image), "face" if index < num_faces else "non_face", f"lfw_faces:{index}"
        )
        for index, image in enumerate(pixels)
    ]


def _is_hidden(path: Path, root: Path) -> bool:
    return any(part.startswith(".") for part in path.relative_to(root).parts)


def image_folder_files(path: str | Path | None) -> list[tuple[Path, str]]:
    """(file, class name) of every image in an ``image_folder`` source, none of them read."""
    root = _existing_path(path, "image_folder")
    if not root.is_dir():
        raise ValueError(
            f"ingestion.path {str(root)!r} is a file, but ingestion.source 'image_folder' needs "
            "a folder with one sub-folder per class."
        )
    entries = sorted(root.iterdir())
    class_dirs = [p for p in entries if p.is_dir() and not p.name.startswith(".")]
    ignored = [_utf8(p.name) for p in entries if p not in class_dirs]
    if ignored:
        logger.info(
            "Ignoring %d entries in the root of %s (hidden, or not a class folder): %s",
            len(ignored),
            root,
            ", ".join(ignored[:MAX_LISTED]),
        )
    if not class_dirs:
        raise ValueError(
            f"No class sub-folders in {str(root)!r}: ingestion.source 'image_folder' expects "
            "one sub-folder per class (e.g. cats/*.jpg, dogs/*.jpg)."
        )
    listed: list[tuple[Path, str]] = []
    for class_dir in class_dirs:
        files = _class_image_files(class_dir)
        if not files:
            raise ValueError(
                f"Class folder {_utf8(str(class_dir))!r} (class {_utf8(class_dir.name)!r}) holds "
                f"no images with an extension in {sorted(IMAGE_EXTENSIONS)}: add images or "
                "remove the folder."
            )
        label = _utf8(class_dir.name)
        listed.extend((f, label) for f in files)
    _warn_undecodable_names([*class_dirs, *(f for f, _ in listed)], root)
    logger.info("Found %d image files in %d classes in %s", len(listed), len(class_dirs), root)
    return listed


def _load_image_folder(root: Path) -> list[ImageRecord]:
    return [ImageRecord(f.read_bytes(), label, _utf8(str(f)))
            for f, label in image_folder_files(root)]


def _utf8(name: str) -> str:
    """``name`` as valid UTF-8 text: bytes that are not UTF-8 (a file name from another system,
    decoded by Python with surrogate escapes) become ``\\xNN``, so tables and JSON can hold it."""
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def _warn_undecodable_names(paths: list[Path], root: Path) -> None:
    renamed = [repr(os.fsencode(p)) for p in paths if _utf8(str(p)) != str(p)]
    if renamed:
        logger.warning(
            "%d names under %s are not valid UTF-8; their bytes are kept as \\xNN in labels "
            "and origins: %s. Rename them to UTF-8 names to see them as written.",
            len(renamed), _utf8(str(root)), ", ".join(renamed[:MAX_LISTED]),
        )


def _class_image_files(class_dir: Path) -> list[Path]:
    """Image files under ``class_dir`` (nested folders included). Hidden files are skipped
    quietly (INFO); any other file ingestion does not read (an animated GIF, a HEIC photo, a
    text file) is skipped with a WARNING listing it, so no image is lost unnoticed."""
    files, hidden, unread = [], [], []
    for candidate in sorted(class_dir.rglob("*")):
        if not candidate.is_file():
            continue
        name = _utf8(candidate.relative_to(class_dir).as_posix())
        if _is_hidden(candidate, class_dir):
            hidden.append(name)
        elif candidate.suffix.lower() not in IMAGE_EXTENSIONS:
            unread.append(name)
        else:
            files.append(candidate)
    where = _utf8(str(class_dir))
    if hidden:
        logger.info("Ignoring %d hidden files in %s: %s", len(hidden), where,
                    ", ".join(hidden[:MAX_LISTED]))
    if unread:
        logger.warning(
            "Skipping %d files in %s whose format ingestion does not read (extensions it reads: "
            "%s): %s. Convert them (e.g. the first frame of a GIF to PNG) to include them.",
            len(unread), where, ", ".join(sorted(IMAGE_EXTENSIONS)),
            ", ".join(unread[:MAX_LISTED]) + (" ..." if len(unread) > MAX_LISTED else ""),
        )
    return files


def _read_parquet_table(path: Path) -> pd.DataFrame:
    """The table at ``path``; a folder without Parquet files or a file that is not Parquet gets
    a message naming the path and what is expected instead of pyarrow's own."""
    expected = ("ingestion.source 'parquet' expects ingestion.path to be a .parquet file (or a "
                "folder of .parquet files) with an image-bytes column and a label column")
    if path.is_dir() and not any(path.rglob("*.parquet")):
        raise ValueError(
            f"ingestion.path {_utf8(str(path))!r} is a folder without .parquet files: {expected}."
            " For a folder with one sub-folder of images per class use ingestion.source: "
            "image_folder."
        )
    try:
        return pd.read_parquet(path)
    except Exception as error:  # pyarrow raises ArrowInvalid, OSError, ... for non-Parquet data
        kind = "a folder holding" if path.is_dir() else "a file holding"
        raise ValueError(
            f"ingestion.path {_utf8(str(path))!r} is {kind} data that is not a readable Parquet "
            f"table ({type(error).__name__}: {error}): {expected}."
        ) from error


def _load_parquet(path: Path, image_column: str, label_column: str) -> list[ImageRecord]:
    table = _read_parquet_table(path)
    for column, setting in ((image_column, "image_column"), (label_column, "label_column")):
        if column not in table.columns:
            raise ValueError(
                f"Column {column!r} not found in {str(path)!r}; columns present: "
                f"{list(map(str, table.columns))}. Set ingestion.{setting} to one of them."
            )
    missing_labels = table.index[table[label_column].isna()].tolist()
    if missing_labels:
        raise ValueError(
            f"{len(missing_labels)} rows of {str(path)!r} have no label in column "
            f"{label_column!r} (rows {missing_labels[:MAX_LISTED]}): fill or drop them."
        )
    return [
        ImageRecord(_as_bytes(value), str(label), f"{path}:{row}")
        for row, (value, label) in enumerate(
            zip(table[image_column].tolist(), table[label_column].tolist(), strict=True)
        )
    ]


def _as_bytes(value: object, setting: str = "ingestion.image_column") -> bytes:
    """Image cell as bytes; accepts raw bytes and Hugging Face style ``{"bytes": ...}`` structs.
    ``setting`` is the parameter that chose the column (named in the error)."""
    if isinstance(value, dict):
        value = value.get("bytes")
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return b""  # validation reports it as an empty image
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    raise ValueError(
        f"Image cell holds {type(value).__name__}, not encoded image bytes: point "
        f"{setting} at a column of PNG/JPEG/... bytes."
    )


register_data_source(DataSource(
    "sklearn_digits", lambda _path, _settings: _load_sklearn_digits(),
    description="scikit-learn's 1,797 8x8 digits, 10 classes (offline demo)"))
register_data_source(DataSource(
    "lfw_faces", lambda _path, _settings: _load_lfw_faces(),
    description="scikit-image's LFW subset: 100 faces, 100 non-faces (offline)"))
register_data_source(DataSource(
    "image_folder", lambda path, _settings: _load_image_folder(path), needs_path=True,
    list_files=image_folder_files, description="one sub-folder of images per class"))
register_data_source(DataSource(
    "parquet", lambda path, settings: _load_parquet(path, settings.image_column,
                                                    settings.label_column),
    needs_path=True, description="a table with an image-bytes column and a label column"))
