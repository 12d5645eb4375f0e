"""Image sources: every labelled image of a source, as encoded bytes (not yet validated).

Sources (``ingestion.source``):

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
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

logger = logging.getLogger(__name__)

SOURCES = ("sklearn_digits", "lfw_faces", "image_folder", "parquet")
IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"})
MAX_LISTED = 20  # offending items shown in one error message; the rest are counted


@dataclass(frozen=True)
class ImageRecord:
    """One labelled image as encoded bytes; ``origin`` is a file path or ``source:index``."""

    image_bytes: bytes = field(repr=False)
    label_name: str
    origin: str


def image_id_of(image_bytes: bytes) -> str:
    """Stable id of an image: the first 16 hex characters of the sha256 of its bytes."""
    return hashlib.sha256(image_bytes).hexdigest()[:16]


def load_records(
    source: str,
    path: str | Path | None = None,
    image_column: str = "image",
    label_column: str = "label",
) -> list[ImageRecord]:
    """Load every labelled image of ``source`` as encoded bytes (not yet validated)."""
    if source == "sklearn_digits":
        return _load_sklearn_digits()
    if source == "lfw_faces":
        return _load_lfw_faces()
    if source in ("image_folder", "parquet"):
        root = _existing_path(path, source)
        if source == "image_folder":
            return _load_image_folder(root)
        return _load_parquet(root, image_column, label_column)
    raise ValueError(f"Unknown ingestion.source {source!r}; valid values: {', '.join(SOURCES)}.")


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
    ignored = [p.name for p in entries if p not in class_dirs]
    _log_ignored(ignored, f"entries in the root of {root} (hidden, or not a class folder)")
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
                f"Class folder {str(class_dir)!r} (class {class_dir.name!r}) holds no images with "
                f"an extension in {sorted(IMAGE_EXTENSIONS)}: add images or remove the folder."
            )
        listed.extend((f, class_dir.name) for f in files)
    logger.info("Found %d image files in %d classes in %s", len(listed), len(class_dirs), root)
    return listed


def _load_image_folder(root: Path) -> list[ImageRecord]:
    return [ImageRecord(f.read_bytes(), name, str(f)) for f, name in image_folder_files(root)]


def _log_ignored(names: list[str], what: str) -> None:
    if names:
        logger.info("Ignoring %d %s: %s", len(names), what, ", ".join(names[:MAX_LISTED]))


def _class_image_files(class_dir: Path) -> list[Path]:
    """Image files under ``class_dir`` (nested folders included), hidden ones skipped."""
    files, skipped = [], []
    for candidate in sorted(class_dir.rglob("*")):
        if not candidate.is_file():
            continue
        if _is_hidden(candidate, class_dir) or candidate.suffix.lower() not in IMAGE_EXTENSIONS:
            skipped.append(candidate.relative_to(class_dir).as_posix())
        else:
            files.append(candidate)
    _log_ignored(skipped, f"hidden or non-image files in {class_dir}")
    return files


def _load_parquet(path: Path, image_column: str, label_column: str) -> list[ImageRecord]:
    table = pd.read_parquet(path)
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


def _as_bytes(value: object) -> bytes:
    """Image cell as bytes; accepts raw bytes and Hugging Face style ``{"bytes": ...}`` structs."""
    if isinstance(value, dict):
        value = value.get("bytes")
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return b""  # validation reports it as an empty image
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    raise ValueError(
        f"Image cell holds {type(value).__name__}, not encoded image bytes: point "
        "ingestion.image_column at a column of PNG/JPEG/... bytes."
    )
