"""Images: sources (load_records), validation, the ``images`` table with its splits and profile,
decoding and the decode cache, and ``ImageData`` (decoded uint8 images + labels)."""

from ft_pipelines.core.data.decoding import cached_decode, decode_cache_key, decode_images
from ft_pipelines.core.data.image_data import (
    ImageData,
    load_reference_images,
    split_image_data,
    split_subset,
    stratified_subset,
)
from ft_pipelines.core.data.manifest import FileRecord, file_records, folder_bytes, is_manifest
from ft_pipelines.core.data.settings import (
    DATA_SOURCES,
    DataSource,
    IngestionParams,
    data_source,
    register_data_source,
)
from ft_pipelines.core.data.shards import MappedImages
from ft_pipelines.core.data.sources import (
    ImageRecord,
    image_folder_files,
    image_id_of,
    load_records,
)
from ft_pipelines.core.data.table import SPLITS, TABLE_COLUMNS, build_images_table
from ft_pipelines.core.data.validation import validate_records

__all__ = [
    "DATA_SOURCES",
    "SPLITS",
    "TABLE_COLUMNS",
    "DataSource",
    "FileRecord",
    "ImageData",
    "ImageRecord",
    "IngestionParams",
    "MappedImages",
    "build_images_table",
    "data_source",
    "cached_decode",
    "decode_cache_key",
    "decode_images",
    "file_records",
    "folder_bytes",
    "image_folder_files",
    "image_id_of",
    "is_manifest",
    "load_records",
    "register_data_source",
    "load_reference_images",
    "split_image_data",
    "split_subset",
    "stratified_subset",
    "validate_records",
]
