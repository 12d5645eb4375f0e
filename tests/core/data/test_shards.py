"""Manifest tables and their on-disk shards give the same images as the embedded table."""

import numpy as np
import pytest
import torch
from PIL import Image

from ft_pipelines.core.data import (
    MappedImages,
    build_images_table,
    file_records,
    load_records,
    split_image_data,
)
from ft_pipelines.core.data import shards as shards_module
from ft_pipelines.core.data.sources import image_folder_files


@pytest.fixture()
def folder(tmp_path):
    rng = np.random.default_rng(0)
    for label in ("a", "b", "c"):
        (tmp_path / "imgs" / label).mkdir(parents=True)
        for i in range(7):
            pixels = rng.integers(0, 255, (30 + i, 40, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(tmp_path / "imgs" / label / f"{i}.png")
    return tmp_path / "imgs"


def test_manifest_splits_match_the_embedded_ones(folder, tmp_path, monkeypatch):
    monkeypatch.setattr(shards_module, "SHARD_BYTES", 5 * 3 * 16 * 16)  # 5 rows per shard
    embedded, _, _ = build_images_table(load_records("image_folder", folder))
    manifest, _, _ = build_images_table(file_records(image_folder_files(folder)),
                                        embed_bytes=False)
    assert manifest["image"].isna().all()
    assert manifest["origin"].tolist() == embedded["origin"].tolist()
    reference = split_image_data(embedded, 16, None)
    mapped = split_image_data(manifest, 16, tmp_path / "cache")
    for name, data in mapped.items():
        assert isinstance(data.images, MappedImages)
        assert len(data) == len(reference[name])
        assert torch.equal(data.images[:], reference[name].images)
        assert torch.equal(data.labels, reference[name].labels)
        index = torch.randperm(len(data))[:4]  # the trainer indexes with index tensors
        assert torch.equal(data.images[index], reference[name].images[index])
        assert torch.equal(data.images[1], reference[name].images[1])
    assert len(list((tmp_path / "cache").glob("*/*.npy"))) == 5  # 21 rows, 5 per shard


def test_evaluation_scores_shards_like_the_embedded_images(folder, tmp_path):
    """Manifest mode crashed in evaluation ('MappedImages' object has no attribute 'dtype'):
    every reader there must take shards as it takes a tensor, with the same numbers."""
    from ft_pipelines.core.evaluation import predict
    from ft_pipelines.core.evaluation.baselines import grey_pixels

    embedded, _, _ = build_images_table(load_records("image_folder", folder))
    manifest, _, _ = build_images_table(file_records(image_folder_files(folder)),
                                        embed_bytes=False)
    tensor = split_image_data(embedded, 16, None)["test"].images
    mapped = split_image_data(manifest, 16, tmp_path / "cache")["test"].images
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 16 * 16, 3))
    np.testing.assert_array_equal(predict(model, mapped, [0.5] * 3, [0.2] * 3, batch_size=2),
                                  predict(model, tensor, [0.5] * 3, [0.2] * 3, batch_size=2))
    np.testing.assert_array_equal(grey_pixels(mapped, 8, batch_size=2), grey_pixels(tensor, 8))
