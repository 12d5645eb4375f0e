"""Manifest mode: an ``images`` table of file paths and hashes instead of the image bytes.

A folder whose images total more than ``ingestion.embed_bytes_max_mb`` is ingested as a manifest:
each row keeps ``origin`` (the file path), ``sha256`` and ``file_bytes`` and the header facts
(width, height, ...), with ``image`` null. Files are read one at a time (validation, hashing,
header), so ingestion never holds every image's bytes. Later stages call ``verify_manifest``
before using the files: a file changed or deleted since ingestion stops the run, named.

Only ``image_folder`` sources can be manifests: sklearn/lfw demos are small, and a ``parquet``
source already stores the bytes in one table (it is embedded as read).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from ft_pipelines.core.data.validation import listing

MANIFEST_COLUMNS = ["sha256", "file_bytes"]  # added to the table's columns in manifest mode


@dataclass(frozen=True)
class FileRecord:
    """An image file read on demand: the ``ImageRecord`` interface without holding the bytes."""

    path: Path
    label_name: str

    @property
    def origin(self) -> str:
        return str(self.path)

    @property
    def image_bytes(self) -> bytes:
        return self.path.read_bytes()


def folder_bytes(files: list[tuple[Path, str]]) -> int:
    """Total size of the listed files (from their metadata: nothing is read)."""
    return sum(path.stat().st_size for path, _ in files)


def file_records(files: list[tuple[Path, str]]) -> list[FileRecord]:
    return [FileRecord(path, label_name) for path, label_name in files]


def is_manifest(table: pd.DataFrame) -> bool:
    """True when ``table`` holds paths and hashes (manifest mode) instead of image bytes."""
    return "sha256" in table.columns


def read_checked(origin: str, sha256: str) -> bytes | str:
    """The file's bytes, or why they are not the ingested ones (deleted / changed)."""
    path = Path(origin)
    if not path.is_file():
        return "deleted (no such file)"
    data = path.read_bytes()
    actual = hashlib.sha256(data).hexdigest()
    if actual != sha256:
        return f"changed since ingestion (sha256 {actual[:16]}..., ingested {sha256[:16]}...)"
    return data


def verify_manifest(table: pd.DataFrame) -> None:
    """Re-hash every file of a manifest table, one at a time; raise naming each one that moved."""
    problems = []
    for origin, sha256 in zip(table["origin"].tolist(), table["sha256"].tolist(), strict=True):
        checked = read_checked(origin, sha256)
        if isinstance(checked, str):
            problems.append(f"{origin}: {checked}")
    if problems:
        raise FileNotFoundError(
            f"{len(problems)} of {len(table)} image files changed or were deleted since "
            "ingestion (the images table is a manifest: it stores paths and hashes, not the "
            f"images):\n{listing(problems)}\nRestore these files, or ingest again "
            "(kedro run --pipeline data_ingestion) to use the folder as it is now."
        )
