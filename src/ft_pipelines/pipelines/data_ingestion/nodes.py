"""Thin nodes: unpack ``params:ingestion``, call core.data, shape the outputs."""

from __future__ import annotations

import pandas as pd

from ft_pipelines.core.data import build_images_table, load_records, validate_records
from ft_pipelines.params import IngestionParams


def ingest_images(ingestion: IngestionParams
                  ) -> tuple[pd.DataFrame, list[str], dict, pd.DataFrame]:
    """Load, validate, split and profile the source named by ``ingestion.source``."""
    records = load_records(ingestion.source, ingestion.path, image_column=ingestion.image_column,
                           label_column=ingestion.label_column)
    good, bad_report = validate_records(records, ingestion.on_bad_image)
    table, class_names, profile = build_images_table(
        good, ingestion.splits.model_dump(), ingestion.seed,
        max_per_class=ingestion.max_per_class, min_per_class=ingestion.min_per_class,
        on_duplicate=ingestion.on_duplicate, bad_images=bad_report)
    profile["source"] = ingestion.source
    return table, class_names, profile, bad_report
