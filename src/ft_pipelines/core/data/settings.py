"""``ingestion``: where the images come from (the registry of data sources; loaders in
``sources.py``), how they are checked and split. The schema lives with the code that reads it;
``ft_pipelines.params`` composes it."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from ft_pipelines.core.utils.registry import Registry
from ft_pipelines.core.utils.schema import (
    Count,
    Fraction,
    Schema,
    Seed,
    check_registered,
    invalid,
)

#: loader(the existing ``ingestion.path`` or None, the ``ingestion`` settings) -> records
Loader = Callable[[Path | None, Any], list[Any]]


@dataclass(frozen=True)
class DataSource:
    name: str
    load: Loader
    needs_path: bool = False        # reads ``ingestion.path`` (checked to exist first)
    #: the (file, class) pairs when the images are files: a large source becomes a manifest
    list_files: Callable[[Path], list[tuple[Path, str]]] | None = None
    description: str = ""


DATA_SOURCES: Registry[DataSource] = Registry("ingestion.source")
register_data_source = DATA_SOURCES.register  # make a source a value of ingestion.source
data_source = DATA_SOURCES.entry


class Splits(Schema):
    """Fractions of each class per split (stratified); they sum to 1."""

    train: Fraction = 0.7
    val: Fraction = 0.15
    test: Fraction = 0.15

    @model_validator(mode="after")
    def _check_total(self) -> Splits:
        if self.train <= 0:
            raise invalid("train", "must be > 0: training needs images")
        total = self.train + self.val + self.test
        if not math.isclose(total, 1.0, abs_tol=1e-6):
            raise invalid("test", f"the splits must sum to 1, got train {self.train} + val "
                                  f"{self.val} + test {self.test} = {total:.6g}")
        return self


class IngestionParams(Schema):
    source: str = "sklearn_digits"          # a registered source (core/data/sources.py)
    path: str | None = None                 # folder (one sub-folder per class) or parquet file
    image_column: str = "image"             # parquet only
    label_column: str = "label"             # parquet only
    splits: Splits = Field(default_factory=Splits)
    seed: Seed = 0
    max_per_class: Count | None = None      # cap per class, for small-data experiments
    min_per_class: Count = 5
    on_bad_image: Literal["error", "skip"] = "error"
    on_duplicate: Literal["error", "skip"] = "error"
    decode_cache_dir: str | None = "data/05_model_input/decoded"
    # image_folder larger than this (MiB): the images table becomes a manifest (paths + sha256)
    embed_bytes_max_mb: float = Field(default=512, gt=0)

    @field_validator("source")
    @classmethod
    def _registered_source(cls, value: str) -> str:
        return check_registered(value, DATA_SOURCES)

    @model_validator(mode="after")
    def _check_combinations(self) -> IngestionParams:
        if data_source(self.source).needs_path and not self.path:
            raise invalid("path", f"required when ingestion.source is {self.source} "
                                  "(the folder or parquet file to read)")
        if self.max_per_class is not None and self.max_per_class < self.min_per_class:
            raise invalid("max_per_class", f"must be >= ingestion.min_per_class "
                                           f"({self.min_per_class}) or null, got "
                                           f"{self.max_per_class}")
        return self
