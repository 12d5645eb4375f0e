"""What an exported model is: the ONNX bytes plus a JSON sidecar that says how to feed it.

The sidecar is the contract with whoever runs the file elsewhere: class names, input size,
normalisation, tensor names and layout, opset, where the weights came from, and the sha256 of
the ONNX bytes (so a sidecar never silently describes another file).
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from typing import Any

SIDECAR_FORMAT = "ft_pipelines.onnx/1"
INPUT_NAME = "input"
OUTPUT_NAME = "logits"
INPUT_LAYOUT = "NCHW"
NORMALISATION = "float32 RGB, (pixel / 255 - mean) / std per channel"


# A sidecar's input size outside this range is not an image size any export here produces.
INPUT_SIZE_RANGE = (8, 4096)
SIDECAR_FIX = ("Re-export with `kedro run --pipelines=export` (the sidecar is written by the "
               "export; do not edit it by hand).")


class SidecarError(ValueError):
    """The sidecar of an exported model is not one this package wrote for this graph."""


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
        check_graph_io(self.model_bytes, self.sidecar)

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
    def temperature(self) -> float:
        """Divides the logits before softmax (calibration); 1.0 for sidecars written before
        the export fitted one."""
        return float(self.sidecar.get("temperature", 1.0))

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
    """Refuse a sidecar this package did not write, naming what is missing or out of range:
    its values drive preprocessing (a zero std, a 60000 px input size) and labels."""
    missing = [key for key in REQUIRED_KEYS if key not in sidecar]
    if missing or sidecar.get("format") != SIDECAR_FORMAT:
        raise SidecarError(
            f"Not an ft_pipelines ONNX sidecar (format={sidecar.get('format')!r}, missing "
            f"{missing}); export the model with `kedro run --pipelines=export`."
        )
    problems = _value_problems(sidecar)
    if problems:
        raise SidecarError(f"The sidecar's values are invalid: {'; '.join(problems)}. "
                           f"{SIDECAR_FIX}")


def _numbers(values: Any, positive: bool) -> bool:
    return isinstance(values, list) and len(values) == 3 and all(
        isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
        and (v > 0 or not positive) for v in values)


def _value_problems(sidecar: dict[str, Any]) -> list[str]:
    problems = []
    names = sidecar["class_names"]
    if not (isinstance(names, list) and names and all(isinstance(n, str) for n in names)):
        problems.append(f"class_names must be a non-empty list of strings, got {names!r}")
    size, (low, high) = sidecar["input_size"], INPUT_SIZE_RANGE
    if not (isinstance(size, int) and not isinstance(size, bool) and low <= size <= high):
        problems.append(f"input_size must be an integer in [{low}, {high}], got {size!r}")
    given = sidecar["input"] if isinstance(sidecar["input"], dict) else {}
    if not _numbers(given.get("mean"), positive=False):
        problems.append(f"input.mean must be 3 finite numbers, got {given.get('mean')!r}")
    if not _numbers(given.get("std"), positive=True):
        problems.append(f"input.std must be 3 finite numbers > 0, got {given.get('std')!r}")
    temperature = sidecar.get("temperature", 1.0)  # absent in sidecars older than calibration
    if not (isinstance(temperature, int | float) and not isinstance(temperature, bool)
            and math.isfinite(temperature) and temperature > 0):
        problems.append(f"temperature must be a finite number > 0, got {temperature!r}")
    return problems


def _static_dims(value_info: Any) -> list[int | None]:
    return [d.dim_value if d.HasField("dim_value") else None
            for d in value_info.type.tensor_type.shape.dim]


def check_graph_io(model_bytes: bytes, sidecar: dict[str, Any]) -> None:
    """The sidecar's input size and class count against the graph's own static shapes."""
    import onnx

    try:
        graph = onnx.load_model_from_string(model_bytes).graph
    except Exception as err:  # protobuf's DecodeError and friends
        raise ValueError(f"Not an ONNX model ({type(err).__name__}: {err}). "
                         "Re-run `kedro run --pipelines=export`.") from err
    size, classes = sidecar["input_size"], len(sidecar["class_names"])
    if graph.input:
        dims = _static_dims(graph.input[0])
        if len(dims) == 4 and any(d not in (None, size) for d in dims[2:]):
            raise SidecarError(f"input_size={size} but the graph takes {dims[2:]} pixels. "
                               f"{SIDECAR_FIX}")
    if graph.output:
        dims = _static_dims(graph.output[0])
        if len(dims) == 2 and dims[1] not in (None, classes):
            raise SidecarError(f"class_names has {classes} names but the graph outputs "
                               f"{dims[1]} scores. {SIDECAR_FIX}")


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
