"""The ``images`` table: classes, duplicates, stratified splits and the dataset profile."""

from __future__ import annotations

import hashlib
import io
import logging
import math
from collections import Counter, defaultdict
from collections.abc import Sequence

import numpy as np
import pandas as pd
from PIL import Image

from ft_pipelines.core.data.manifest import MANIFEST_COLUMNS
from ft_pipelines.core.data.sources import MAX_LISTED, ImageRecord, image_id_of
from ft_pipelines.core.data.validation import listing

logger = logging.getLogger(__name__)

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


def build_images_table(
    records: Sequence[ImageRecord],
    split_fractions: dict[str, float] | None = None,
    seed: int = 0,
    *,
    max_per_class: int | None = None,
    min_per_class: int = 2,
    on_duplicate: str = "error",
    bad_images: pd.DataFrame | None = None,
    embed_bytes: bool = True,
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
    ``embed_bytes=False`` builds a manifest (see ``manifest``): ``image`` null, plus ``sha256``
    and ``file_bytes``; records are then read one at a time (``FileRecord``).
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
    ordered, skipped_duplicates = _drop_label_conflicts(ordered, ids, on_duplicate)
    if on_duplicate == "skip":
        ordered, skipped = _drop_duplicates(ordered, ids)
        skipped_duplicates += skipped
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
        [r for name in class_names for r in by_class[name]], class_names, ids, split_of,
        embed_bytes,
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


def _drop_label_conflicts(
    ordered: list[ImageRecord], ids: dict[str, str], on_duplicate: str
) -> tuple[list[ImageRecord], list[dict[str, str]]]:
    """Identical images under different labels: an image cannot be two classes, and which
    label is right cannot be told, so ``error`` raises naming every copy and ``skip`` drops
    all of them (keeping one would keep an arbitrary label)."""
    groups: dict[str, list[ImageRecord]] = defaultdict(list)
    for record in ordered:
        groups[ids[record.origin]].append(record)
    conflicts = [g for g in groups.values() if len({r.label_name for r in g}) > 1]
    if not conflicts:
        return ordered, []
    lines = [" = ".join(f"{r.origin} ({r.label_name})" for r in group) for group in conflicts]
    if on_duplicate == "error":
        raise ValueError(
            f"{len(conflicts)} images appear under different labels (identical bytes):\n"
            f"{listing(lines)}\nAn image has one class: remove the copies under the wrong "
            "label, or set ingestion.on_duplicate: skip to leave out every copy of them."
        )
    skipped = [{"origin": r.origin, "duplicate_of": "; ".join(
                   f"{o.origin} (label {o.label_name})" for o in group if o is not r)}
               for group in conflicts for r in group]
    logger.warning("Left out %d images that appear under different labels "
                   "(ingestion.on_duplicate: skip): %s", len(skipped),
                   "; ".join(lines[:MAX_LISTED]))
    dropped = {d["origin"] for d in skipped}
    return [r for r in ordered if r.origin not in dropped], skipped


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
            f"(train/val/test leakage):\n{listing(lines)}\n"
            "Remove the duplicate files, or set ingestion.on_duplicate: skip to keep one copy."
        )
    if duplicate_groups:
        logger.warning(
            "%d groups of identical images kept in the same split: %s",
            len(duplicate_groups),
            "; ".join(" = ".join(o) for o in duplicate_groups[:MAX_LISTED]),
        )
    return sum(len(origins) - 1 for origins in duplicate_groups)


def _image_header(image_bytes: bytes, origin: str) -> tuple[int, int, int, str]:
    """(width, height, channels, mode) from the image header; no pixel decoding."""
    try:
        with Image.open(io.BytesIO(image_bytes)) as image:
            return image.width, image.height, len(image.getbands()), image.mode
    except Exception as error:
        raise ValueError(
            f"Cannot read image {origin}: {error}. Run validate_records first "
            "(ingestion.on_bad_image) to find or skip unreadable images."
        ) from error


def _table_rows(
    records: list[ImageRecord],
    class_names: list[str],
    ids: dict[str, str],
    split_of: dict[str, str],
    embed_bytes: bool = True,
) -> pd.DataFrame:
    label_of = {name: index for index, name in enumerate(class_names)}
    rows = []
    for record in records:
        image_bytes = record.image_bytes  # a FileRecord reads its file here, once per row
        width, height, channels, mode = _image_header(image_bytes, record.origin)
        extra = {} if embed_bytes else {"sha256": hashlib.sha256(image_bytes).hexdigest(),
                                        "file_bytes": len(image_bytes)}
        rows.append(
            {
                "image_id": ids[record.origin],
                "image": image_bytes if embed_bytes else None,
                "label": label_of[record.label_name],
                "label_name": record.label_name,
                "split": split_of[record.origin],
                "origin": record.origin,
                "width": width,
                "height": height,
                "channels": channels,
                "mode": mode,
                **extra,
            }
        )
    table = pd.DataFrame(rows, columns=TABLE_COLUMNS + ([] if embed_bytes else MANIFEST_COLUMNS))
    table["split_order"] = table["split"].map({name: i for i, name in enumerate(SPLITS)})
    table = table.sort_values(["split_order", "label", "image_id", "origin"], kind="stable")
    table = table.drop(columns="split_order").reset_index(drop=True)
    integers = ["label", "width", "height", "channels"] + ([] if embed_bytes else ["file_bytes"])
    return table.astype(dict.fromkeys(integers, "int64"))


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
