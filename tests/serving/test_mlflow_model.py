"""The MLflow pyfunc model saved and loaded back in this process: bytes or base64 in, one answer
per image, the broken one with its error; the same classes as the predict code."""

from __future__ import annotations

import base64
import io

import mlflow
import numpy as np
import pandas as pd
from PIL import Image

from ft_pipelines.core.export import CPU, OnnxRunner, predict_rows
from ft_pipelines.core.export.exporter import export_onnx
from ft_pipelines.tracking.registry import pyfunc_arguments, signature
from tests.core.export.conftest import CLASSES, MEAN, SIZE, STD, tiny_net


def images(count: int) -> list[bytes]:
    rng = np.random.default_rng(0)
    encoded = []
    for index in range(count):
        buffer = io.BytesIO()
        pixels = rng.integers(0, 255, (9 + index, 7 + index, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(buffer, format="PNG" if index % 2 else "JPEG")
        encoded.append(buffer.getvalue())
    return encoded


def test_the_saved_model_answers_every_row_like_the_predict_code(tmp_path):
    model = export_onnx(tiny_net(), CLASSES, SIZE, MEAN, STD)
    good = images(5)
    with pyfunc_arguments(model, good[:2]) as arguments:
        mlflow.pyfunc.save_model(str(tmp_path / "model"), **arguments)
    loaded = mlflow.pyfunc.load_model(str(tmp_path / "model"))
    assert loaded.metadata.get_input_schema() == signature().inputs
    requirements = (tmp_path / "model" / "requirements.txt").read_text().split()
    assert sorted(r.split("==")[0] for r in requirements) == [
        "mlflow", "numpy", "onnxruntime", "pandas", "pillow"]
    rows = [*good, b"\x89PNG\r\n\x1a\n broken", "not base64!"]
    answers = loaded.predict(pd.DataFrame({"image": rows}))
    as_text = loaded.predict(pd.DataFrame({"image": [base64.b64encode(g).decode()
                                                     for g in good]}))
    expected = list(predict_rows(OnnxRunner(model, CPU, 1),
                                 [(str(i), data) for i, data in enumerate(good)]))
    classes = [row["predicted_class"] for row in expected]
    assert answers["predicted_class"].tolist() == [*classes, None, None]
    assert as_text["predicted_class"].tolist() == classes
    assert answers["error"].tolist()[:5] == [None] * 5
    assert "not a readable image" in answers["error"][5]
    assert "not base64" in answers["error"][6]
    np.testing.assert_allclose(answers["probability"][:5].astype(float),
                               [row["probability"] for row in expected], rtol=1e-6)
    assert answers["top5"][0] == expected[0]["top5"]
