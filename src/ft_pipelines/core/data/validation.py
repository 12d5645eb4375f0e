"""Validation: every image decoded fully; bad ones raise or are dropped and reported."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import pandas as pd

from ft_pipelines.core.data.sources import MAX_LISTED, ImageRecord
from ft_pipelines.serving.image_classifier import bad_image_reason

logger = logging.getLogger(__name__)


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
        reason = bad_image_reason(record.image_bytes)
        if reason is None:
            good.append(record)
        else:
            bad_rows.append({"origin": record.origin, "reason": reason})
    report = pd.DataFrame(bad_rows, columns=["origin", "reason"])
    if bad_rows and on_bad_image == "error":
        raise ValueError(
            f"{len(bad_rows)} of {len(records)} images cannot be decoded:\n"
            f"{listing(r['origin'] + ': ' + r['reason'] for r in bad_rows)}\n"
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


def listing(lines: object) -> str:
    items = [f"  - {line}" for line in lines]  # type: ignore[union-attr]
    if len(items) > MAX_LISTED:
        items = [*items[:MAX_LISTED], f"  ... and {len(items) - MAX_LISTED} more"]
    return "\n".join(items)
