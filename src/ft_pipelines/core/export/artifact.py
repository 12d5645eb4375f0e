"""What an exported model is: the ONNX bytes plus a JSON sidecar that says how to feed it.

The sidecar is the contract with whoever runs the file elsewhere: class names, input size,
normalisation, tensor names and layout, opset, where the weights came from, and the sha256 of
the ONNX bytes (so a sidecar never silently describes another file).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

SIDECAR_FORMAT = "ft_pipelines.onnx/1"
INPUT_NAME = "input"
OUTPUT_NAME = "logits"
INPUT_LAYOUT = "NCHW"
NORMALISATION = "float32 RGB, (pixel / 255 - mean) / std per channel"


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class OnnxModel:
    """An exported classifier: serialised ONNX graph and its sidecar (plain JSON types)."""

    model_bytes: bytes = field(repr=False)
    sidecar: dict[str, Any]

    def __post_init__(self) -> None:
        check_sidecar(self.sidecar)
        actual = sha256_hex(self.model_bytes)
        if self.sidecar["sha256"] != actual:
            raise ValueError(
                f"Sidecar sha256 {self.sidecar['sha256'][:12]}... does not match the ONNX bytes "
                f"({actual[:12]}...): the file was modified or truncated after export. "
                "Re-run `kedro run --pipelines=export`."
            )

    @property
    def class_names(self) -> list[str]:
        return list(self.sidecar["class_names"])

    @property
    def input_size(self) -> int:
        return int(self.sidecar["input_size"])

    @property
    def mean(self) -> list[float]:
        return list(self.sidecar["input"]["mean"])

    @property
    def std(self) -> list[float]:
        return list(self.sidecar["input"]["std"])

    @property
    def precision(self) -> str:
        return str(self.sidecar["precision"])

    @property
    def sha256(self) -> str:
        return str(self.sidecar["sha256"])

    def with_graph(self, model_bytes: bytes, **changes: Any) -> OnnxModel:
        """Another graph for the same classifier (e.g. quantised), sidecar updated to match."""
        sidecar = {**self.sidecar, **changes, "sha256": sha256_hex(model_bytes)}
        return OnnxModel(model_bytes, sidecar)


@dataclass(frozen=True)
class NotExported:
    """Stands in for a model an option left out (the int8 one with ``export.quantize: null``):
    ``OnnxModelDataset`` writes nothing for it, so no version appears."""

    reason: str


REQUIRED_KEYS = ("format", "class_names", "input_size", "input", "output", "opset", "precision",
                 "sha256")


def check_sidecar(sidecar: dict[str, Any]) -> None:
    """Refuse a sidecar this package did not write, naming what is missing."""
    missing = [key for key in REQUIRED_KEYS if key not in sidecar]
    if missing or sidecar.get("format") != SIDECAR_FORMAT:
        raise ValueError(
            f"Not an ft_pipelines ONNX sidecar (format={sidecar.get('format')!r}, missing "
            f"{missing}); export the model with `kedro run --pipelines=export`."
        )


def build_sidecar(model_bytes: bytes, class_names: list[str], input_size: int,
                  mean: list[float], std: list[float], opset: int,
                  source: dict[str, Any] | None = None, exporter: str = "") -> dict[str, Any]:
    """The sidecar of a freshly exported fp32 classifier."""
    return {
        "format": SIDECAR_FORMAT,
        "class_names": [str(name) for name in class_names],
        "input_size": int(input_size),
        "input": {"name": INPUT_NAME, "dtype": "float32", "layout": INPUT_LAYOUT,
                  "shape": ["batch", 3, int(input_size), int(input_size)],
                  "normalisation": NORMALISATION,
                  "mean": [float(v) for v in mean], "std": [float(v) for v in std]},
        "output": {"name": OUTPUT_NAME, "dtype": "float32", "shape": ["batch", len(class_names)],
                   "meaning": "unnormalised class scores in class_names order; softmax gives "
                              "probabilities"},
        "opset": int(opset),
        "precision": "fp32",
        "exporter": exporter,
        "source_model": source or {},
        "sha256": sha256_hex(model_bytes),
    }
