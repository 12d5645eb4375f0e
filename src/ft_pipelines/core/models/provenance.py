"""What data a model was made for: its class list and, once trained, the fingerprint of the
``images`` table it was trained on. The artifact spec keeps both (``data``), so a stage handed a
model and images from different runs stops with a clear error instead of training a 2-class
head on 10-class labels.

More generally an artifact records what it was computed from (``record_sources``): the
fingerprint of each input it was made from, by input name. A table keeps the record in
``DataFrame.attrs`` (written into the parquet file), a model in its ``trained_on`` record (so
in the artifact spec). A stage handed the artifact with other versions of those inputs can
then tell (``stale_sources``) before it runs."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

import pandas as pd
from torch import nn

from ft_pipelines.core.utils import content_fingerprint

ATTRIBUTE = "trained_on"  # model.trained_on = {"classes": [...], "data_fingerprint": str | None}
MADE_FROM = "made_from"  # {input name: {"fingerprint": str, "what": str}} in trained_on or attrs
IMAGE_COLUMNS = ("image_id", "label_name", "split")  # what data_fingerprint reads
Artifact = TypeVar("Artifact", nn.Module, pd.DataFrame)


class InputMismatchError(ValueError):
    """A model and the data handed to it with it do not belong together."""


def data_fingerprint(images: pd.DataFrame) -> str:
    """Hash of what training sees: every image id with its label and split (order-free)."""
    rows = sorted(zip(*(images[column].astype(str) for column in IMAGE_COLUMNS), strict=True))
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
    if record.get("classes") is None:  # a record of sources only (see record_sources)
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


def source_fingerprint(value: Any) -> str:
    """What identifies an input an artifact is computed from: an ``images`` table its data
    fingerprint, a model (or its state dict) its weights, anything else its content."""
    if isinstance(value, pd.DataFrame) and set(IMAGE_COLUMNS) <= set(value.columns):
        return data_fingerprint(value)
    if isinstance(value, nn.Module):
        value = value.state_dict()
    return content_fingerprint(value)


def describe_source(value: Any) -> str:
    """A few words on an input for error messages (the fingerprint alone says little)."""
    if isinstance(value, nn.Module):
        config = getattr(value, "backbone_cfg", None)
        return f"{config.architecture if config else type(value).__name__} weights"
    if isinstance(value, pd.DataFrame) and "label_name" in value.columns:
        return f"{len(value)} images of {_classes(classes_of(value))}"
    if isinstance(value, Mapping) and "strategy" in value:
        return f"a {value['strategy']} plan"
    if isinstance(value, list | tuple):  # class_names
        return _classes([str(item) for item in value])
    return f"a {type(value).__name__}"


def record_sources(artifact: Artifact, **sources: Any) -> Artifact:
    """Stamp ``artifact`` (a table or a model) with the fingerprint of each named input it was
    computed from; a model keeps its class/data record alongside."""
    stamp = {name: {"fingerprint": source_fingerprint(value), "what": describe_source(value)}
             for name, value in sources.items()}
    if isinstance(artifact, pd.DataFrame):
        artifact.attrs[MADE_FROM] = stamp
    else:
        setattr(artifact, ATTRIBUTE, {**(training_data(artifact) or {}), MADE_FROM: stamp})
    return artifact


def recorded_sources(value: Any) -> dict[str, dict[str, str]]:
    """What ``record_sources`` left on a table or model (empty when nothing was recorded)."""
    if isinstance(value, pd.DataFrame):
        return dict(value.attrs.get(MADE_FROM) or {})
    if isinstance(value, nn.Module):
        return dict((training_data(value) or {}).get(MADE_FROM) or {})
    return {}


def stale_sources(value: Any, available: Sequence[str],
                  current: Callable[[str], str]) -> dict[str, dict[str, str]]:
    """The recorded sources of ``value`` among ``available`` inputs whose fingerprint now
    (``current(name)``) differs from the one recorded: ``{name: record}``."""
    return {name: record for name, record in recorded_sources(value).items()
            if name in available and record.get("fingerprint") != current(name)}
