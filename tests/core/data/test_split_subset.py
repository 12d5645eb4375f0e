"""A stage that reads a sample of one split decodes only the sample: on the demo's data and
settings it gets exactly the images (and order) that decoding everything and subsampling gave."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ft_pipelines.core.data import (
    build_images_table,
    image_data,
    load_records,
    split_image_data,
    split_subset,
    stratified_subset,
)
from ft_pipelines.params import IngestionParams, SimilarityParams

SIZE = 16  # pixels do not change which rows are chosen; small keeps the full decode quick


@pytest.fixture(scope="module")
def demo_table():
    ingestion = IngestionParams()  # the demo: sklearn digits, conf/base's splits and seed
    table, _, _ = build_images_table(load_records(ingestion.source), ingestion.splits.model_dump(),
                                     ingestion.seed, min_per_class=ingestion.min_per_class)
    return table


@pytest.fixture()
def decoded_rows(monkeypatch):
    """How many rows each decode of the images table decoded."""
    counts, real = [], image_data.decode_images

    def counting(table, size, *args, **kwargs):
        counts.append(len(table))
        return real(table, size, *args, **kwargs)

    monkeypatch.setattr(image_data, "decode_images", counting)
    return counts


def test_the_demo_sample_is_the_one_decoding_everything_gave(demo_table, decoded_rows):
    similarity = SimilarityParams()  # the demo's max_images and seed
    before = stratified_subset(split_image_data(demo_table, SIZE, None)["train"],
                               similarity.max_images, similarity.seed)
    now = split_subset(demo_table, "train", SIZE, None, similarity.max_images, similarity.seed)

    train_rows = int((demo_table["split"] == "train").sum())
    assert len(now) == len(before) < train_rows  # the demo subsamples
    assert torch.equal(now.labels, before.labels)
    assert torch.equal(now.images, before.images)
    assert decoded_rows == [len(demo_table), len(now)]  # before: all rows; now: the sample


def test_nothing_left_out_decodes_the_whole_table_as_other_stages_do(demo_table, decoded_rows):
    train_rows = int((demo_table["split"] == "train").sum())
    data = split_subset(demo_table, "val", SIZE, None, None, 0)
    expected = split_image_data(demo_table, SIZE, None)["val"]
    assert torch.equal(data.images, expected.images)
    assert decoded_rows == [len(demo_table)] * 2  # one decode cache key for every stage
    sample = split_subset(demo_table, "train", SIZE, None, train_rows, 0)
    assert len(sample) == train_rows
    labels = demo_table.loc[demo_table["split"] == "train", "label"].to_numpy()
    assert np.array_equal(sample.labels.numpy(), labels)
