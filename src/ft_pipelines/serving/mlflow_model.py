"""The MLflow pyfunc model of an exported classifier, logged "from code": MLflow copies this
file into the model and runs it when the model is loaded (``set_model`` at the end), with
``image_classifier.py`` beside it (``code_paths``). Loading and serving need onnxruntime,
numpy, Pillow, pandas and MLflow: neither torch nor ft_pipelines.

Input: a DataFrame with an ``image`` column of encoded images (raw bytes, or base64 text as in
a JSON request). Output: one row per image with ``predicted_class``, ``probability``, ``top5``
(``[{"class", "probability"}]``) and ``error`` (why an image could not be read; then no class).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pandas as pd
from image_classifier import classify, decode_for_model, image_bytes_of, normalise
from mlflow.models import set_model
from mlflow.pyfunc import PythonModel

IMAGE_COLUMN = "image"
OUTPUT_COLUMNS = ["predicted_class", "probability", "top5", "error"]
BATCH = 64  # images per onnxruntime call: bounds the memory of one request


class OnnxImageClassifier(PythonModel):
    """An ONNX classifier and its sidecar (the artifacts ``onnx`` and ``sidecar``)."""

    def load_context(self, context: Any) -> None:
        model_bytes = Path(context.artifacts["onnx"]).read_bytes()
        self.sidecar = json.loads(Path(context.artifacts["sidecar"]).read_text())
        actual = hashlib.sha256(model_bytes).hexdigest()
        if self.sidecar.get("sha256") != actual:
            raise ValueError(f"The model's sidecar describes ONNX bytes with sha256 "
                             f"{str(self.sidecar.get('sha256'))[:12]}, but the logged file has "
                             f"{actual[:12]}: the artifacts were modified after logging")
        options = ort.SessionOptions()
        options.log_severity_level = 3  # errors only
        self.session = ort.InferenceSession(model_bytes, options,
                                            providers=["CPUExecutionProvider"])
        self.input_name = self.sidecar["input"]["name"]

    def _logits(self, images_uint8: np.ndarray) -> np.ndarray:
        mean, std = self.sidecar["input"]["mean"], self.sidecar["input"]["std"]
        return np.concatenate([
            self.session.run(None, {self.input_name: normalise(images_uint8[i:i + BATCH],
                                                               mean, std)})[0]
            for i in range(0, len(images_uint8), BATCH)])

    def predict(self, context: Any, model_input: pd.DataFrame,
                params: dict[str, Any] | None = None) -> pd.DataFrame:
        if IMAGE_COLUMN not in model_input.columns:
            raise ValueError(f"The input needs an {IMAGE_COLUMN!r} column of encoded images "
                             f"(bytes or base64 text); it has {list(model_input.columns)}")
        size = int(self.sidecar["input_size"])
        decoded = []
        for value in model_input[IMAGE_COLUMN].tolist():
            data = image_bytes_of(value)
            decoded.append(data if isinstance(data, str) else decode_for_model(data, size))
        rows = classify(decoded, self._logits, list(self.sidecar["class_names"]),
                        float(self.sidecar.get("temperature", 1.0)))  # 1.0: older sidecars
        # object columns keep None as None (JSON null), where pandas would make it NaN
        return pd.DataFrame(rows, columns=OUTPUT_COLUMNS, index=model_input.index, dtype=object)


set_model(OnnxImageClassifier())
