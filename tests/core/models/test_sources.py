"""An artifact records what it was computed from (``record_sources``), and the record survives
the datasets that store it: a table's parquet file, a model's safetensors spec (issue 22, 3)."""

from __future__ import annotations

import pandas as pd
import torch
from kedro.io import Version

from ft_pipelines.core.models import (
    apply_surgery,
    record_sources,
    record_training_data,
    recorded_sources,
    source_fingerprint,
    stale_sources,
)
from ft_pipelines.datasets import AtomicParquetDataset, ModelArtifactDataset
from tests.core.models.test_provenance import _table


def _stale(value, **inputs) -> dict:
    return stale_sources(value, list(inputs), lambda name: source_fingerprint(inputs[name]))


def test_a_table_keeps_the_model_and_data_it_was_computed_for_through_its_parquet_file(
        tmp_path, fresh_backbone):
    images = _table(["cat", "dog"])
    table = record_sources(pd.DataFrame({"layer": ["a"], "score": [0.5]}),
                           finetuned_model=fresh_backbone, images=images)
    dataset = AtomicParquetDataset(filepath=str(tmp_path / "t.parquet"),
                                   version=Version(None, None))
    dataset.save(table)
    loaded = AtomicParquetDataset(filepath=str(tmp_path / "t.parquet"),
                                  version=Version(None, None)).load()
    assert recorded_sources(loaded) == recorded_sources(table)
    assert recorded_sources(loaded)["images"]["what"] == "6 images of 2 classes [cat, dog]"
    assert _stale(loaded, finetuned_model=fresh_backbone, images=images) == {}

    other = record_training_data(apply_surgery(fresh_backbone, 3), images)  # other weights
    with torch.no_grad():
        next(other.parameters()).add_(1.0)
    assert set(_stale(loaded, finetuned_model=other, images=images)) == {"finetuned_model"}
    assert set(_stale(loaded, images=_table(["cat", "dog"], shift=4))) == {"images"}
    assert _stale(loaded, images=images) == {}  # only the inputs at hand are compared


def test_a_model_keeps_the_plan_it_was_made_for_through_its_artifact(tmp_path, fresh_backbone):
    plan = {"strategy": "partial_finetune", "trainable_blocks": 2, "num_classes": 2}
    model = record_training_data(apply_surgery(fresh_backbone, 2, trainable_blocks=2),
                                 class_names=["cat", "dog"])
    record_sources(model, finetune_plan=plan)
    dataset = ModelArtifactDataset(filepath=str(tmp_path / "m.safetensors"),
                                   version=Version(None, None))
    dataset.save(model)
    loaded = ModelArtifactDataset(filepath=str(tmp_path / "m.safetensors"),
                                  version=Version(None, None)).load()
    assert loaded.trained_on["classes"] == ["cat", "dog"]  # the class record is kept alongside
    assert recorded_sources(loaded)["finetune_plan"]["what"] == "a partial_finetune plan"
    assert source_fingerprint(loaded) == source_fingerprint(model)  # weights, bit for bit
    assert _stale(loaded, finetune_plan=dict(plan)) == {}
    head_only = {**plan, "strategy": "head_only", "trainable_blocks": 0}
    assert set(_stale(loaded, finetune_plan=head_only)) == {"finetune_plan"}
