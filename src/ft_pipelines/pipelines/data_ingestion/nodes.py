"""Thin nodes: unpack ``params:ingestion``, call core.data, shape the outputs."""

from __future__ import annotations

from typing import Any

import pandas as pd

from ft_pipelines.core.data import build_images_table, load_records, validate_records


def ingest_images(ingestion: dict[str, Any]) -> tuple[pd.DataFrame, list[str], dict, pd.DataFrame]:
    """Load, validate, split and profile the source named by ``ingestion.source``."""
    records = load_records(ingestion["source"], ingestion.get("path"),
                           image_column=ingestion.get("image_column", "image"),
                           label_column=ingestion.get("label_column", "label"))
    good, bad_report = validate_records(records, ingestion.get("on_bad_image", "error"))
    table, class_names, profile = build_images_table(
        good, ingestion.get("splits"), int(ingestion.get("seed", 0)),
        max_per_class=ingestion.get("max_per_class"),
        min_per_class=int(ingestion.get("min_per_class", 2)),
        on_duplicate=ingestion.get("on_duplicate", "error"), bad_images=bad_report)
    profile["source"] = ingestion["source"]
    return table, class_names, profile, bad_report
