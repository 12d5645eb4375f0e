"""What data a model was made for: its class list and, once trained, the fingerprint of the
``images`` table it was trained on. The artifact spec keeps both (``data``), so a stage handed a
model and images from different runs stops with a clear error instead of training a 2-class
head on 10-class labels."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

import pandas as pd
from torch import nn

ATTRIBUTE = "trained_on"  # model.trained_on = {"classes": [...], "data_fingerprint": str | None}


class InputMismatchError(ValueError):
    """A model and the data handed to it with it do not belong together."""


def data_fingerprint(images: pd.DataFrame) -> str:
    """Hash of what training sees: every image id with its label and split (order-free)."""
    rows = sorted(
        zip(images["image_id"].astype(str), images["label_name"].astype(str),
            images["split"].astype(str), strict=True)
    )
    digest = hashlib.sha256("\n".join("\t".join(row) for row in rows).encode())
    return digest.hexdigest()[:16]


def classes_of(images: pd.DataFrame) -> list[str]:
    """Class names in label order (``class_names`` of the run that built the table)."""
    pairs = images[["label", "label_name"]].drop_duplicates().sort_values("label")
    return [str(name) for name in pairs["label_name"]]


def record_training_data(
    model: nn.Module, images: pd.DataFrame | None = None, class_names: Sequence[str] | None = None
) -> nn.Module:
    """Stamp ``model`` with the classes it is for and, given ``images``, the data it saw."""
    classes = classes_of(images) if images is not None else [str(c) for c in class_names or []]
    setattr(model, ATTRIBUTE, {
        "classes": classes,
        "data_fingerprint": data_fingerprint(images) if images is not None else None,
    })
    return model


def training_data(model: nn.Module) -> dict[str, Any] | None:
    """The record ``record_training_data`` left, or None (a pretrained source network)."""
    return getattr(model, ATTRIBUTE, None)


def _classes(names: Sequence[str]) -> str:
    shown = ", ".join(map(str, names[:10])) + (", ..." if len(names) > 10 else "")
    return f"{len(names)} classes [{shown}]"


def input_mismatch(
    model: nn.Module, images: pd.DataFrame | None = None,
    class_names: Sequence[str] | None = None
) -> str | None:
    """Why ``model`` does not fit ``images``/``class_names``, or None when it does (or when the
    model records nothing, as a pretrained source network)."""
    record = training_data(model)
    if not record:
        return None
    expected = list(record["classes"])
    if class_names is not None and [str(c) for c in class_names] != expected:
        return f"is for {_classes(expected)} but class_names holds {_classes(list(class_names))}"
    if images is None:
        return None
    found = classes_of(images)
    if found != expected:
        return f"is for {_classes(expected)} but images holds {_classes(found)}"
    trained = record.get("data_fingerprint")
    if trained and trained != data_fingerprint(images):
        return (f"was trained on other images (data fingerprint {trained}; these images: "
                f"{data_fingerprint(images)})")
    return None


def check_model_fits_data(
    model: nn.Module, images: pd.DataFrame | None = None,
    class_names: Sequence[str] | None = None, *, model_name: str = "model"
) -> None:
    """Raise ``InputMismatchError`` when ``model`` was made for other data than these inputs."""
    reason = input_mismatch(model, images, class_names)
    if reason:
        raise InputMismatchError(
            f"{model_name} {reason}: the inputs come from different runs. Re-run the stages "
            "that produce them together, or pin versions that belong together with "
            "--load-versions."
        )
