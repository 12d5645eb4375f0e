"""Images: sources (load_records), validation, the ``images`` table with its splits and profile,
decoding and the decode cache, and ``ImageData`` (decoded uint8 images + labels)."""

from ft_pipelines.core.data.decoding import cached_decode, decode_cache_key, decode_images
from ft_pipelines.core.data.image_data import (
    ImageData,
    load_reference_images,
    split_image_data,
    stratified_subset,
)
from ft_pipelines.core.data.sources import SOURCES, ImageRecord, image_id_of, load_records
from ft_pipelines.core.data.table import SPLITS, TABLE_COLUMNS, build_images_table
from ft_pipelines.core.data.validation import validate_records

__all__ = [
    "SOURCES",
    "SPLITS",
    "TABLE_COLUMNS",
    "ImageData",
    "ImageRecord",
    "build_images_table",
    "cached_decode",
    "decode_cache_key",
    "decode_images",
    "image_id_of",
    "load_records",
    "load_reference_images",
    "split_image_data",
    "stratified_subset",
    "validate_records",
]
