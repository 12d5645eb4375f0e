"""``ingestion``: where the images come from, how they are checked and split."""

from __future__ import annotations

import math
from typing import Literal

from pydantic import Field, model_validator

from ft_pipelines.core.utils.schema import Count, Fraction, Schema, Seed, invalid


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
    source: Literal["sklearn_digits", "lfw_faces", "image_folder", "parquet"] = "sklearn_digits"
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

    @model_validator(mode="after")
    def _check_combinations(self) -> IngestionParams:
        if self.source in ("image_folder", "parquet") and not self.path:
            raise invalid("path", f"required when ingestion.source is {self.source} "
                                  "(the folder or parquet file to read)")
        if self.max_per_class is not None and self.max_per_class < self.min_per_class:
            raise invalid("max_per_class", f"must be >= ingestion.min_per_class "
                                           f"({self.min_per_class}) or null, got "
                                           f"{self.max_per_class}")
        return self
