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
from ft_pipelines.core.data.shards import MappedImages
from ft_pipelines.core.data.sources import (
    SOURCES,
    ImageRecord,
    image_folder_files,
    image_id_of,
    load_records,
)
from ft_pipelines.core.data.table import SPLITS, TABLE_COLUMNS, build_images_table
from ft_pipelines.core.data.validation import validate_records

__all__ = [
    "SOURCES",
    "SPLITS",
    "TABLE_COLUMNS",
    "FileRecord",
    "ImageData",
    "ImageRecord",
    "MappedImages",
    "build_images_table",
    "cached_decode",
    "decode_cache_key",
    "decode_images",
    "file_records",
    "folder_bytes",
    "image_folder_files",
    "image_id_of",
    "is_manifest",
    "load_records",
    "load_reference_images",
    "split_image_data",
    "split_subset",
    "stratified_subset",
    "validate_records",
]
