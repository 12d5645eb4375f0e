"""Images: sources (load_records), validation, the ``images`` table with its splits and profile,
decoding and the decode cache, and ``ImageData`` (decoded uint8 images + labels)."""

from ft_pipelines.core.data.decoding import decode_cache_key, decode_images
from ft_pipelines.core.data.image_data import (
    ImageData,
    load_reference_images,
    split_image_data,
    split_subset,
    stratified_subset,
)
from ft_pipelines.core.data.manifest import file_records, folder_bytes
from ft_pipelines.core.data.settings import (
    DATA_SOURCES,
    DataSource,
    IngestionParams,
    data_source,
    register_data_source,
)
from ft_pipelines.core.data.shards import MappedImages
from ft_pipelines.core.data.sources import ImageRecord, load_records
from ft_pipelines.core.data.table import build_images_table
from ft_pipelines.core.data.validation import validate_records

__all__ = [
    "DATA_SOURCES",
    "DataSource",
    "ImageData",
    "ImageRecord",
    "IngestionParams",
    "MappedImages",
    "build_images_table",
    "data_source",
    "decode_cache_key",
    "decode_images",
    "file_records",
    "folder_bytes",
    "load_records",
    "load_reference_images",
    "register_data_source",
    "split_image_data",
    "split_subset",
    "stratified_subset",
    "validate_records",
]
