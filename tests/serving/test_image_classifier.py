"""The served model's own code: numpy/Pillow decoding and classification that ingestion and
predict share, and a pyfunc file that imports neither torch nor this package."""

from __future__ import annotations

import ast
import base64
import io
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from ft_pipelines.serving import image_classifier
from ft_pipelines.tracking.registry import CODE_PATHS, MODEL_CODE, REQUIREMENTS

STDLIB = set(sys.stdlib_module_names)
# what the logged requirements install (pillow is imported as PIL), and the code beside it
ALLOWED = {"numpy", "PIL", "onnxruntime", "pandas", "mlflow", "image_classifier"}


def top_level_imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names - STDLIB - {"__future__"}


def png(size=(12, 9), mode="RGB") -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, size, 120).save(buffer, format="PNG")
    return buffer.getvalue()


def test_the_logged_code_imports_only_the_logged_requirements():
    assert {"mlflow", "onnxruntime", "numpy", "pillow", "pandas"} == set(REQUIREMENTS)
    for path in (MODEL_CODE, *CODE_PATHS):
        assert top_level_imports(path) <= ALLOWED, path
    assert top_level_imports(CODE_PATHS[0]) == {"numpy", "PIL"}


def test_ingestion_and_predict_decode_with_the_served_code():
    from ft_pipelines.core.data import decoding, validation
    from ft_pipelines.core.export import predict, runtime

    assert decoding.decode_one is image_classifier.decode_one
    assert validation.bad_image_reason is image_classifier.bad_image_reason
    assert predict.decode_for_model is image_classifier.decode_for_model
    assert runtime.softmax is image_classifier.softmax


def test_request_cells_are_bytes_or_base64_text():
    data = png()
    assert image_classifier.image_bytes_of(data) == data
    assert image_classifier.image_bytes_of(memoryview(data)) == data
    assert image_classifier.image_bytes_of(base64.b64encode(data).decode()) == data
    assert "not base64" in image_classifier.image_bytes_of("not base64 at all!")
    assert "got int" in image_classifier.image_bytes_of(3)


def test_classify_answers_every_image_and_reports_the_unreadable_one():
    decoded = [image_classifier.decode_for_model(png(mode=mode), 8) for mode in ("RGB", "L")]
    broken = image_classifier.decode_for_model(b"\x89PNG\r\n\x1a\n broken", 8)
    assert isinstance(broken, str)
    calls = []

    def logits(images: np.ndarray) -> np.ndarray:
        calls.append(images.shape)
        return np.array([[0.0, 2.0, 1.0]] * len(images))

    rows = image_classifier.classify([decoded[0], broken, decoded[1]], logits, ["a", "b", "c"])
    assert calls == [(2, 3, 8, 8)]  # one call, readable images only, NCHW uint8
    assert [row["predicted_class"] for row in rows] == ["b", None, "b"]
    assert rows[1]["error"] == broken and rows[0]["error"] is None
    assert [entry["class"] for entry in rows[0]["top5"]] == ["b", "c", "a"]
    assert abs(sum(entry["probability"] for entry in rows[0]["top5"]) - 1) < 1e-9


def test_classify_divides_the_logits_by_the_temperature():
    decoded = [image_classifier.decode_for_model(png(mode="RGB"), 8)]

    def logits(images: np.ndarray) -> np.ndarray:
        return np.array([[0.0, 2.0, 1.0]] * len(images))

    plain = image_classifier.classify(decoded, logits, ["a", "b", "c"])[0]
    soft = image_classifier.classify(decoded, logits, ["a", "b", "c"], temperature=2.0)[0]
    assert soft["predicted_class"] == plain["predicted_class"] == "b"
    expected = np.exp(1.0) / (1 + np.exp(1.0) + np.exp(0.5))  # softmax([0, 1, 0.5])[1]
    assert abs(soft["probability"] - expected) < 1e-12 < plain["probability"] - expected
