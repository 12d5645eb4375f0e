"""Images -> classes with an exported classifier, in numpy and Pillow only.

The one implementation of the decoding (ingestion trains on it, ``predict`` and the served MLflow
model label with it), the normalisation and the top-5 answer. It imports nothing from
ft_pipelines and no torch: the MLflow model carries this file (``code_paths``) and imports it
as the top-level module ``image_classifier`` in an environment with neither.
"""

from __future__ import annotations

import base64
import binascii
import io
import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from PIL import Image, ImageOps

TOP_K = 5
_HIGH_BIT_MODES = ("I", "I;16", "I;16B", "I;16L", "I;16N", "F")


def to_rgb(image: Image.Image) -> Image.Image:
    """RGB view of any Pillow mode, keeping the full range of 16-bit and float images."""
    if image.mode in _HIGH_BIT_MODES:
        # Pillow's own conversion clips these to 0..255: rescale by the actual range instead.
        pixels = np.asarray(image, dtype=np.float64)
        low, high = float(pixels.min()), float(pixels.max())
        scaled = (pixels - low) * (255.0 / (high - low)) if high > low else pixels * 0
        return Image.fromarray(np.rint(scaled).astype(np.uint8)).convert("RGB")
    if image.mode in ("P", "PA") and "transparency" in image.info:
        image = image.convert("RGBA")  # avoids Pillow's palette-transparency warning
    return image.convert("RGB")


def decode_one(image_bytes: bytes, size: int) -> np.ndarray:
    """Encoded bytes -> uint8 [size, size, 3] (RGB, EXIF-oriented, bilinear resize)."""
    with Image.open(io.BytesIO(image_bytes)) as opened:
        rgb = to_rgb(ImageOps.exif_transpose(opened))  # camera JPEGs: honour orientation
        if rgb.size != (size, size):
            # Pillow's bilinear resize widens its kernel when shrinking: antialiased.
            rgb = rgb.resize((size, size), Image.Resampling.BILINEAR)
        return np.asarray(rgb, dtype=np.uint8)


def bad_image_reason(image_bytes: bytes) -> str | None:
    """Why these bytes are not a usable image, or None when they decode completely."""
    if len(image_bytes) == 0:
        return "empty (zero-byte) file"
    try:
        with Image.open(io.BytesIO(image_bytes)) as image:
            image.verify()  # structure and checksums
    except Exception as error:  # Pillow raises many types for bad files
        return f"not a readable image ({type(error).__name__}: {error})"
    try:
        with Image.open(io.BytesIO(image_bytes)) as image:
            image.load()  # verify() misses truncated pixel data; a full decode does not
    except Exception as error:
        return f"truncated or corrupt image data ({type(error).__name__}: {error})"
    return None


def decode_for_model(image_bytes: bytes, size: int) -> np.ndarray | str:
    """uint8 [size, size, 3] pixels, or why these bytes are not a usable image."""
    reason = bad_image_reason(image_bytes)
    if reason is not None:
        return reason
    try:
        return decode_one(image_bytes, size)
    except Exception as error:  # Pillow raises many types for odd files
        return f"cannot decode ({type(error).__name__}: {error})"


def image_bytes_of(value: Any) -> bytes | str:
    """A request's image cell as bytes: raw bytes, or base64 text (what JSON can carry);
    otherwise why it is not an image (a str, as ``decode_for_model`` reports)."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    if isinstance(value, str):
        try:
            return base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError) as error:
            return f"not base64-encoded image bytes ({error})"
    return f"expected image bytes or base64 text, got {type(value).__name__}"


def normalise(images_uint8: np.ndarray, mean: Sequence[float], std: Sequence[float]
              ) -> np.ndarray:
    """uint8 [N, 3, H, W] -> the float32 input the graph expects (as in training)."""
    mean_ = np.asarray(mean, dtype=np.float32).reshape(1, -1, 1, 1)
    std_ = np.asarray(std, dtype=np.float32).reshape(1, -1, 1, 1)
    return (images_uint8.astype(np.float32) / np.float32(255.0) - mean_) / std_


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Probabilities of softmax(logits / temperature): the temperature of the sidecar
    (fitted on the validation split at export) makes them calibrated; argmax is unchanged."""
    if not (isinstance(temperature, int | float) and math.isfinite(temperature)
            and temperature > 0):
        raise ValueError(f"temperature must be a finite number > 0, got {temperature!r}")
    scaled = np.asarray(logits, dtype=np.float64) / float(temperature)
    shifted = scaled - scaled.max(axis=1, keepdims=True)
    exp = np.exp(shifted.astype(np.float64))
    return exp / exp.sum(axis=1, keepdims=True)


def top_prediction(probs: np.ndarray, class_names: Sequence[str], k: int = TOP_K
                   ) -> dict[str, Any]:
    """The top class, its probability and the top ``k`` (``[{"class", "probability"}]``)."""
    order = np.argsort(-probs, kind="stable")[:k]
    return {"predicted_class": class_names[order[0]], "probability": float(probs[order[0]]),
            "top5": [{"class": class_names[i], "probability": float(probs[i])} for i in order],
            "error": None}


def classify(decoded: Sequence[np.ndarray | str], logits: Callable[[np.ndarray], np.ndarray],
             class_names: Sequence[str], temperature: float = 1.0) -> list[dict[str, Any]]:
    """One answer per decoded image, in order: ``top_prediction``, or for a str (why the image
    could not be read) that ``error`` and no class. ``logits`` maps uint8 [N, 3, H, W] to
    [N, classes]; it runs once, on the readable images only. Probabilities are
    softmax(logits / ``temperature``), the sidecar's calibration."""
    good = [pixels for pixels in decoded if not isinstance(pixels, str)]
    probs = iter(softmax(logits(np.stack(good).transpose(0, 3, 1, 2)), temperature)
                 if good else [])
    return [{"predicted_class": None, "probability": None, "top5": None, "error": pixels}
            if isinstance(pixels, str) else top_prediction(next(probs), class_names)
            for pixels in decoded]
