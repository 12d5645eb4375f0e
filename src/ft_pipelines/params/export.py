"""``export`` (ONNX + int8, checked by onnxruntime) and ``predict`` (label new images)."""

from __future__ import annotations

from pydantic import Field, field_validator

from ft_pipelines.core.export.kinds import EXPORT_KINDS
from ft_pipelines.core.export.settings import ExportParams, Int8ConfigName
from ft_pipelines.core.utils.schema import Count, Schema, check_registered

__all__ = ["ExportParams", "Int8ConfigName", "PredictParams"]
NOT_A_KIND = ("auto", "registry")  # predict.model values that choose among the kinds


class PredictParams(Schema):
    path: str | None = None                 # image folder (recursive), .parquet table, one image
    # auto | registry | an exported model kind (core/export/kinds.py: pruned_int8, ...)
    model: str = "auto"
    registry_version: str = Field(default="champion", min_length=1)  # model=registry: alias|n
    batch_size: Count = 64                  # images decoded and classified at a time
    image_column: str = "image"             # parquet only: encoded image bytes
    file_column: str = "file"               # parquet only: row names (optional)
    threads: Count | None = None            # onnxruntime intra-op threads; null: PyTorch's

    @field_validator("model")
    @classmethod
    def _registered_kind(cls, value: str) -> str:
        return value if value in NOT_A_KIND else check_registered(
            value, {**dict.fromkeys(NOT_A_KIND), **EXPORT_KINDS})

    @field_validator("registry_version", mode="before")
    @classmethod
    def _version_as_text(cls, value: object) -> object:
        # --params=predict.registry_version=3 arrives as the number 3: version "3"
        return str(value) if isinstance(value, int) and not isinstance(value, bool) else value

