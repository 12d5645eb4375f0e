"""A model records the classes and data it was made for; the shared check refuses other data."""

from __future__ import annotations

import re

import pandas as pd
from torch import nn

from ft_pipelines.core.models import (
    data_fingerprint,
    input_mismatch,
    record_training_data,
)


def _table(classes: list[str], per_class: int = 3, shift: int = 0) -> pd.DataFrame:
    rows = [{"image_id": f"{c}{i + shift}", "label": n, "label_name": c,
             "split": ("train", "val", "test")[i % 3]}
            for n, c in enumerate(classes) for i in range(per_class)]
    return pd.DataFrame(rows)


def test_fingerprint_ignores_row_order_but_not_ids_labels_or_splits():
    table = _table(["cat", "dog"])
    assert data_fingerprint(table) == data_fingerprint(table.iloc[::-1])
    assert data_fingerprint(table) != data_fingerprint(_table(["cat", "dog"], shift=1))
    moved = table.assign(split=table["split"].replace({"val": "train"}))
    assert data_fingerprint(table) != data_fingerprint(moved)


def test_a_model_for_two_classes_refuses_ten_class_images():
    model = record_training_data(nn.Linear(2, 2), class_names=["face", "non_face"])
    digits = _table([str(d) for d in range(10)])
    assert re.match(r"is for 2 classes \[face, non_face\] but images holds 10 classes",
                    input_mismatch(model, digits))


def test_a_trained_model_refuses_other_images_of_the_same_classes():
    model = record_training_data(nn.Linear(2, 2), _table(["cat", "dog"]))
    assert not input_mismatch(model, _table(["cat", "dog"]))  # its own data: fine
    assert "was trained on other images" in input_mismatch(model, _table(["cat", "dog"], shift=5))
    assert "class_names holds 3 classes" in input_mismatch(model, None, ["cat", "dog", "eel"])


def test_a_model_without_a_record_is_not_checked():
    assert not input_mismatch(nn.Linear(2, 2), _table(["a", "b", "c"]))  # a pretrained source
