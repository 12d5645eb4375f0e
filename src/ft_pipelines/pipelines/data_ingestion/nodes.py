"""Thin nodes: unpack ``params:ingestion``, call core.data, shape the outputs."""

from __future__ import annotations

import logging

import pandas as pd

from ft_pipelines.core.data import (
    build_images_table,
    data_source,
    file_records,
    folder_bytes,
    load_records,
    validate_records,
)
from ft_pipelines.params import IngestionParams

logger = logging.getLogger(__name__)


def ingest_images(ingestion: IngestionParams
                  ) -> tuple[pd.DataFrame, list[str], dict, pd.DataFrame]:
    """Load, validate, split and profile the source named by ``ingestion.source``.

    An image folder over ``ingestion.embed_bytes_max_mb`` becomes a manifest (files read one at
    a time, later stages read them again); other sources are embedded.
    """
    manifest, source = False, data_source(ingestion.source)
    if source.list_files is not None:  # images that are files: a large source is a manifest
        files = source.list_files(ingestion.path)
        total = folder_bytes(files)
        manifest = total > ingestion.embed_bytes_max_mb * 2**20
        if manifest:
            logger.info("Images total %.0f MiB > ingestion.embed_bytes_max_mb=%g: the images "
                        "table is a manifest", total / 2**20, ingestion.embed_bytes_max_mb)
    if manifest:
        records = file_records(files)
    else:
        records = load_records(ingestion.source, ingestion.path, ingestion)
    good, bad_report = validate_records(records, ingestion.on_bad_image)
    table, class_names, profile = build_images_table(
        good, ingestion.splits.model_dump(), ingestion.seed,
        max_per_class=ingestion.max_per_class, min_per_class=ingestion.min_per_class,
        on_duplicate=ingestion.on_duplicate, bad_images=bad_report, embed_bytes=not manifest)
    profile["source"] = ingestion.source
    profile["manifest"] = manifest
    return table, class_names, profile, bad_report
