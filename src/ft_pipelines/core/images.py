"""Image ingestion: load labelled images from a source, validate them, split them, decode them.

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
import os
import tempfile
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image, ImageOps
from tqdm.auto import tqdm

logger = logging.getLogger(__name__)

SOURCES = ("sklearn_digits", "lfw_faces", "image_folder", "parquet")
IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"})
SPLITS = ("train", "val", "test")
DEFAULT_SPLIT_FRACTIONS = {"train": 0.7, "val": 0.15, "test": 0.15}
TABLE_COLUMNS = [
    "image_id",
    "image",
    "label",
    "label_name",
    "split",
    "origin",
    "width",
    "height",
    "channels",
    "mode",
]
MAX_LISTED = 20  # offending items shown in one error message; the rest are counted
PROGRESS_MIN_ROWS = 500
_CACHE_FORMAT = "ft_pipelines.decoded_images.v1"  # bump when the cached layout changes


@dataclass(frozen=True)
class ImageRecord:
    """One labelled image as encoded bytes; ``origin`` is a file path or ``source:index``."""

    image_bytes: bytes = field(repr=False)
    label_name: str
    origin: str


def image_id_of(image_bytes: bytes) -> str:
    """Stable id of an image: the first 16 hex characters of the sha256 of its bytes."""
    return hashlib.sha256(image_bytes).hexdigest()[:16]


# --------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------


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


def _load_image_folder(root: Path) -> list[ImageRecord]:
    if not root.is_dir():
        raise ValueError(
            f"ingestion.path {str(root)!r} is a file, but ingestion.source 'image_folder' needs "
            "a folder with one sub-folder per class."
        )
    entries = sorted(root.iterdir())
    class_dirs = [p for p in entries if p.is_dir() and not p.name.startswith(".")]
    ignored = [p.name for p in entries if p not in class_dirs]
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
    records: list[ImageRecord] = []
    for class_dir in class_dirs:
        files = _class_image_files(class_dir)
        if not files:
            raise ValueError(
                f"Class folder {str(class_dir)!r} (class {class_dir.name!r}) holds no images with "
                f"an extension in {sorted(IMAGE_EXTENSIONS)}: add images or remove the folder."
            )
        records.extend(ImageRecord(f.read_bytes(), class_dir.name, str(f)) for f in files)
    logger.info("Loaded %d image files in %d classes from %s", len(records), len(class_dirs), root)
    return records


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
    if skipped:
        logger.info(
            "Ignoring %d hidden or non-image files in %s: %s",
            len(skipped),
            class_dir,
            ", ".join(skipped[:MAX_LISTED]),
        )
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


# --------------------------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------------------------


def validate_records(
    records: Sequence[ImageRecord], on_bad_image: str = "error"
) -> tuple[list[ImageRecord], pd.DataFrame]:
    """Decode every image fully; raise on bad ones (``error``) or drop and report them (``skip``).

    Returns the good records and a report DataFrame with columns ``origin`` and ``reason``.
    """
    if on_bad_image not in ("error", "skip"):
        raise ValueError(f"ingestion.on_bad_image must be 'error' or 'skip', got {on_bad_image!r}.")
    good: list[ImageRecord] = []
    bad_rows: list[dict[str, str]] = []
    for record in records:
        reason = _bad_image_reason(record.image_bytes)
        if reason is None:
            good.append(record)
        else:
            bad_rows.append({"origin": record.origin, "reason": reason})
    report = pd.DataFrame(bad_rows, columns=["origin", "reason"])
    if bad_rows and on_bad_image == "error":
        raise ValueError(
            f"{len(bad_rows)} of {len(records)} images cannot be decoded:\n"
            f"{_listing(r['origin'] + ': ' + r['reason'] for r in bad_rows)}\n"
            "Remove or repair these files, or set ingestion.on_bad_image: skip to leave them out."
        )
    if bad_rows:
        logger.warning(
            "Skipped %d of %d images that cannot be decoded (ingestion.on_bad_image: skip): %s",
            len(bad_rows),
            len(records),
            ", ".join(report["origin"].head(MAX_LISTED)),
        )
    return good, report


def _bad_image_reason(image_bytes: bytes) -> str | None:
    """Why these bytes are not a usable image, or None when they decode completely."""
    if len(image_bytes) == 0:
        return "empty (zero-byte) file"
    try:
        with Image.open(io.BytesIO(image_bytes)) as image:
            image.verify()  # structure and checksums
    except Exception as error:  # Pillow raises many types for bad files
        return f"not a readable image ({type(error).__name__}: {error})"
    try:
        with Image.open(io.BytesIO(image_bytes)) as image:
            image.load()  # verify() misses truncated pixel data; a full decode does not
    except Exception as error:
        return f"truncated or corrupt image data ({type(error).__name__}: {error})"
    return None


def _listing(lines: object) -> str:
    items = [f"  - {line}" for line in lines]  # type: ignore[union-attr]
    if len(items) > MAX_LISTED:
        items = [*items[:MAX_LISTED], f"  ... and {len(items) - MAX_LISTED} more"]
    return "\n".join(items)


# --------------------------------------------------------------------------------------------
# Table building: classes, duplicates, splits, profile
# --------------------------------------------------------------------------------------------


def build_images_table(
    records: Sequence[ImageRecord],
    split_fractions: dict[str, float] | None = None,
    seed: int = 0,
    *,
    max_per_class: int | None = None,
    min_per_class: int = 2,
    on_duplicate: str = "error",
    bad_images: pd.DataFrame | None = None,
) -> tuple[pd.DataFrame, list[str], dict]:
    """Split validated records per class and return the ``images`` table, class names, profile.

    Splits are stratified per class and depend only on the image bytes, origins and ``seed``
    (not on record order). A class with >= 3 images gets at least one val and one test image
    (when those fractions are > 0). A class with 2 images puts one in train and one in val (or
    test when the val fraction is 0); a class with 1 image (only when ``min_per_class`` is 1)
    goes to train. ``max_per_class`` keeps a deterministic random subsample of each class.
    ``on_duplicate``: identical images in different splits raise (``error``); ``skip`` keeps
    the first copy (smallest origin) of every duplicate group before splitting.
    ``bad_images`` is the report from ``validate_records``, counted in the profile.
    """
    fractions = _checked_split_fractions(split_fractions)
    _check_table_options(max_per_class, min_per_class, on_duplicate)
    if not records:
        raise ValueError("No images to build the table from: check ingestion.source/path.")
    ids = {r.origin: image_id_of(r.image_bytes) for r in records}
    if len(ids) != len(records):
        repeated = [o for o, n in Counter(r.origin for r in records).items() if n > 1]
        raise ValueError(f"Records must have unique origins; repeated: {repeated[:MAX_LISTED]}.")
    ordered = sorted(records, key=lambda r: (ids[r.origin], r.origin))
    skipped_duplicates: list[dict[str, str]] = []
    if on_duplicate == "skip":
        ordered, skipped_duplicates = _drop_duplicates(ordered, ids)
    by_class = _group_by_class(ordered)
    _check_class_counts(by_class, min_per_class)
    if max_per_class is not None:
        by_class = {
            name: _subsample(recs, max_per_class, seed, name) for name, recs in by_class.items()
        }
    class_names = sorted(by_class)
    split_of = _assign_splits(by_class, fractions, seed)
    duplicates_found = _check_duplicates(ordered, ids, split_of, on_duplicate)
    table = _table_rows(
        [r for name in class_names for r in by_class[name]], class_names, ids, split_of
    )
    profile = _dataset_profile(table, class_names, fractions, seed)
    profile["duplicates_found"] = duplicates_found + len(skipped_duplicates)
    profile["duplicates_skipped"] = skipped_duplicates
    profile["bad_images_skipped"] = 0 if bad_images is None else len(bad_images)
    return table, class_names, profile


def _checked_split_fractions(split_fractions: dict[str, float] | None) -> dict[str, float]:
    given = dict(DEFAULT_SPLIT_FRACTIONS if split_fractions is None else split_fractions)
    unknown = sorted(set(given) - set(SPLITS))
    if unknown:
        raise ValueError(f"ingestion.splits has unknown split(s) {unknown}; use {list(SPLITS)}.")
    fractions = {name: float(given.get(name, 0.0)) for name in SPLITS}
    negative = {name: value for name, value in fractions.items() if value < 0}
    if negative:
        raise ValueError(f"ingestion.splits fractions must be >= 0, got {negative}.")
    if fractions["train"] <= 0:
        raise ValueError("ingestion.splits.train must be > 0: training needs images.")
    total = sum(fractions.values())
    if not math.isclose(total, 1.0, abs_tol=1e-6):
        raise ValueError(
            f"ingestion.splits fractions must sum to 1, got {fractions} (sum {total:.6g})."
        )
    return fractions


def _check_table_options(max_per_class: int | None, min_per_class: int, on_duplicate: str) -> None:
    if on_duplicate not in ("error", "skip"):
        raise ValueError(f"ingestion.on_duplicate must be 'error' or 'skip', got {on_duplicate!r}.")
    if min_per_class < 1:
        raise ValueError(f"ingestion.min_per_class must be >= 1, got {min_per_class}.")
    if max_per_class is not None and max_per_class < max(min_per_class, 1):
        raise ValueError(
            f"ingestion.max_per_class ({max_per_class}) must be >= ingestion.min_per_class "
            f"({min_per_class}), or null for no cap."
        )


def _drop_duplicates(
    ordered: list[ImageRecord], ids: dict[str, str]
) -> tuple[list[ImageRecord], list[dict[str, str]]]:
    """Keep the copy with the smallest origin of each identical-bytes group; report the rest."""
    first_origin: dict[str, str] = {}
    for record in sorted(ordered, key=lambda r: r.origin):
        first_origin.setdefault(ids[record.origin], record.origin)
    kept = [r for r in ordered if first_origin[ids[r.origin]] == r.origin]
    skipped = [
        {"origin": r.origin, "duplicate_of": first_origin[ids[r.origin]]}
        for r in ordered
        if first_origin[ids[r.origin]] != r.origin
    ]
    if skipped:
        logger.warning(
            "Skipped %d duplicate images (identical bytes; ingestion.on_duplicate: skip): %s",
            len(skipped),
            ", ".join(f"{d['origin']} (= {d['duplicate_of']})" for d in skipped[:MAX_LISTED]),
        )
    return kept, skipped


def _group_by_class(ordered: list[ImageRecord]) -> dict[str, list[ImageRecord]]:
    by_class: dict[str, list[ImageRecord]] = defaultdict(list)
    for record in ordered:
        by_class[record.label_name].append(record)
    return dict(by_class)


def _check_class_counts(by_class: dict[str, list[ImageRecord]], min_per_class: int) -> None:
    if len(by_class) < 2:
        only = ", ".join(f"{name!r} ({len(recs)} images)" for name, recs in by_class.items())
        raise ValueError(
            f"Only one class found: {only}. Classification needs at least 2 classes: "
            "add a folder/label per class."
        )
    too_small = {
        name: len(recs) for name, recs in sorted(by_class.items()) if len(recs) < min_per_class
    }
    if too_small:
        listed = ", ".join(f"{name!r}: {count}" for name, count in too_small.items())
        raise ValueError(
            f"Classes with fewer than ingestion.min_per_class={min_per_class} images: {listed}. "
            "Add images to them, remove them, or lower ingestion.min_per_class."
        )
    for name, recs in sorted(by_class.items()):
        if len(recs) < 3:
            logger.warning(
                "Class %r has only %d images: it cannot have a train, a val and a test image.",
                name,
                len(recs),
            )


def _class_rng(seed: int, class_name: str, purpose: str) -> np.random.Generator:
    """A generator per (seed, class, purpose): one class's draw never shifts another's."""
    digest = hashlib.sha256(f"{purpose}\x00{class_name}".encode()).digest()
    return np.random.default_rng([int(seed), int.from_bytes(digest[:8], "little")])


def _subsample(recs: list[ImageRecord], cap: int, seed: int, name: str) -> list[ImageRecord]:
    if len(recs) <= cap:
        return recs
    chosen = np.sort(_class_rng(seed, name, "subsample").permutation(len(recs))[:cap])
    return [recs[i] for i in chosen]


def _split_counts(count: int, fractions: dict[str, float]) -> dict[str, int]:
    """Images per split for a class of ``count`` images (train always gets at least one)."""
    if count < 3:
        rest = "val" if fractions["val"] > 0 else "test"
        counts = {"train": min(count, 1), "val": 0, "test": 0}
        counts[rest] = count - counts["train"]
        return counts
    held = {name: math.floor(count * fractions[name] + 0.5) for name in ("val", "test")}
    for name, value in held.items():
        if fractions[name] > 0:
            held[name] = max(value, 1)
    while count - held["val"] - held["test"] < 1:
        larger = "val" if held["val"] >= held["test"] else "test"
        held[larger] -= 1
    return {"train": count - held["val"] - held["test"], **held}


def _assign_splits(
    by_class: dict[str, list[ImageRecord]], fractions: dict[str, float], seed: int
) -> dict[str, str]:
    """Split name per origin; each class list is already sorted by (image_id, origin)."""
    split_of: dict[str, str] = {}
    for name, recs in by_class.items():
        order = _class_rng(seed, name, "split").permutation(len(recs))
        counts = _split_counts(len(recs), fractions)
        names = [split for split in SPLITS for _ in range(counts[split])]
        for position, split in zip(order, names, strict=True):
            split_of[recs[position].origin] = split
    return split_of


def _check_duplicates(
    ordered: list[ImageRecord], ids: dict[str, str], split_of: dict[str, str], on_duplicate: str
) -> int:
    """Count duplicate copies among the split records; raise for copies in different splits."""
    groups: dict[str, list[str]] = defaultdict(list)
    for record in ordered:
        if record.origin in split_of:
            groups[ids[record.origin]].append(record.origin)
    duplicate_groups = [origins for origins in groups.values() if len(origins) > 1]
    crossing = [o for o in duplicate_groups if len({split_of[x] for x in o}) > 1]
    if crossing and on_duplicate == "error":
        lines = (" and ".join(f"{x} ({split_of[x]})" for x in origins) for origins in crossing)
        raise ValueError(
            f"{len(crossing)} groups of identical images would land in different splits "
            f"(train/val/test leakage):\n{_listing(lines)}\n"
            "Remove the duplicate files, or set ingestion.on_duplicate: skip to keep one copy."
        )
    if duplicate_groups:
        logger.warning(
            "%d groups of identical images kept in the same split: %s",
            len(duplicate_groups),
            "; ".join(" = ".join(o) for o in duplicate_groups[:MAX_LISTED]),
        )
    return sum(len(origins) - 1 for origins in duplicate_groups)


def _image_header(record: ImageRecord) -> tuple[int, int, int, str]:
    """(width, height, channels, mode) from the image header; no pixel decoding."""
    try:
        with Image.open(io.BytesIO(record.image_bytes)) as image:
            return image.width, image.height, len(image.getbands()), image.mode
    except Exception as error:
        raise ValueError(
            f"Cannot read image {record.origin}: {error}. Run validate_records first "
            "(ingestion.on_bad_image) to find or skip unreadable images."
        ) from error


def _table_rows(
    records: list[ImageRecord],
    class_names: list[str],
    ids: dict[str, str],
    split_of: dict[str, str],
) -> pd.DataFrame:
    label_of = {name: index for index, name in enumerate(class_names)}
    rows = []
    for record in records:
        width, height, channels, mode = _image_header(record)
        rows.append(
            {
                "image_id": ids[record.origin],
                "image": record.image_bytes,
                "label": label_of[record.label_name],
                "label_name": record.label_name,
                "split": split_of[record.origin],
                "origin": record.origin,
                "width": width,
                "height": height,
                "channels": channels,
                "mode": mode,
            }
        )
    table = pd.DataFrame(rows, columns=TABLE_COLUMNS)
    table["split_order"] = table["split"].map({name: i for i, name in enumerate(SPLITS)})
    table = table.sort_values(["split_order", "label", "image_id", "origin"], kind="stable")
    table = table.drop(columns="split_order").reset_index(drop=True)
    return table.astype(
        {"label": "int64", "width": "int64", "height": "int64", "channels": "int64"}
    )


def _dataset_profile(
    table: pd.DataFrame, class_names: list[str], fractions: dict[str, float], seed: int
) -> dict:
    """JSON-ready summary of the table (native Python types only)."""
    per_class_split = {
        name: {
            split: int(((table["label_name"] == name) & (table["split"] == split)).sum())
            for split in SPLITS
        }
        for name in class_names
    }

    def stats(column: str) -> dict[str, float]:
        values = table[column]
        return {
            "min": int(values.min()),
            "median": float(values.median()),
            "max": int(values.max()),
        }

    return {
        "num_images": len(table),
        "num_classes": len(class_names),
        "class_names": list(class_names),
        "images_per_class": {name: sum(c.values()) for name, c in per_class_split.items()},
        "images_per_split": {s: int((table["split"] == s).sum()) for s in SPLITS},
        "images_per_class_and_split": per_class_split,
        "width": stats("width"),
        "height": stats("height"),
        "channel_modes": {str(k): int(v) for k, v in sorted(Counter(table["mode"]).items())},
        "split_fractions": dict(fractions),
        "seed": int(seed),
    }


# --------------------------------------------------------------------------------------------
# Decoding
# --------------------------------------------------------------------------------------------


def _to_rgb(image: Image.Image) -> Image.Image:
    """RGB view of any Pillow mode, keeping the full range of 16-bit and float images."""
    if image.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        # Pillow's own conversion clips these to 0..255: rescale by the actual range instead.
        pixels = np.asarray(image, dtype=np.float64)
        low, high = float(pixels.min()), float(pixels.max())
        scaled = (pixels - low) * (255.0 / (high - low)) if high > low else pixels * 0
        return Image.fromarray(np.rint(scaled).astype(np.uint8)).convert("RGB")
    if image.mode in ("P", "PA") and "transparency" in image.info:
        image = image.convert("RGBA")  # avoids Pillow's palette-transparency warning
    return image.convert("RGB")


def _decode_one(image_bytes: bytes, size: int) -> np.ndarray:
    with Image.open(io.BytesIO(image_bytes)) as opened:
        rgb = _to_rgb(ImageOps.exif_transpose(opened))  # camera JPEGs: honour orientation
        if rgb.size != (size, size):
            # Pillow's bilinear resize widens its kernel when shrinking: antialiased.
            rgb = rgb.resize((size, size), Image.Resampling.BILINEAR)
        return np.asarray(rgb, dtype=np.uint8)


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
        pixels[index] = _decode_one(image_bytes, size)
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
    from safetensors.torch import load_file, save_file

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
    directory.mkdir(parents=True, exist_ok=True)
    # Write to a temporary file in the same folder, then rename: readers never see half a file.
    handle, tmp_name = tempfile.mkstemp(dir=directory, prefix=cache_file.name, suffix=".tmp")
    os.close(handle)
    try:
        save_file(
            {"images": images, "labels": labels},
            tmp_name,
            metadata={"key": key, "size": str(int(size)), "format": _CACHE_FORMAT},
        )
        os.replace(tmp_name, cache_file)
    finally:
        if os.path.exists(tmp_name):
            os.remove(tmp_name)
    logger.info("Cached %d decoded images at %s", len(table), cache_file)
    return images, labels
