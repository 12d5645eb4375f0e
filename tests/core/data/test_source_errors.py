"""Ingestion's messages for awkward inputs: names that are not UTF-8 are kept (bytes as \\xNN)
with a WARNING, files in formats it does not read (animated GIFs) are listed in a WARNING, and a
parquet path that is a folder or a text file is explained, naming the path."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from ft_pipelines.core.data import build_images_table, load_records, validate_records


def _png(path: bytes | Path, seed: int) -> None:
    pixels = np.random.default_rng(seed).integers(0, 256, (24, 24, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(os.fsdecode(path), format="PNG")


def _folder(root: Path, classes=("cats", "dogs"), per_class=4) -> Path:
    for n, name in enumerate(classes):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            _png(root / name / f"{i}.png", seed=100 * n + i)
    return root


def _animated_gif(path: Path) -> None:
    frames = [Image.new("RGB", (16, 16), colour) for colour in ("red", "green", "blue")]
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=100, loop=0)


def test_non_utf8_names_are_ingested_and_reported(tmp_path, caplog):
    root = _folder(tmp_path / "data")
    raw_root = os.fsencode(root)
    _png(raw_root + b"/cats/caf\xe9.png", seed=7)
    os.mkdir(raw_root + b"/b\xefrds")
    for i in range(3):
        _png(raw_root + b"/b\xefrds/%d.png" % i, seed=50 + i)
    with caplog.at_level("WARNING", logger="ft_pipelines.core.data"):
        records = load_records("image_folder", root)
    good, _ = validate_records(records)
    table, class_names, profile = build_images_table(good)
    assert class_names == ["b\\xefrds", "cats", "dogs"]
    assert str(root / "cats" / "caf\\xe9.png") in set(table["origin"])
    table.to_parquet(tmp_path / "images.parquet")  # used to raise UnicodeEncodeError
    assert "not valid UTF-8" in caplog.text and "caf\\xe9.png" in caplog.text
    assert "Rename them" in caplog.text


def test_animated_gifs_are_listed_in_a_warning(tmp_path, caplog):
    root = _folder(tmp_path / "data")
    _animated_gif(root / "cats" / "waving.gif")
    (root / "dogs" / ".DS_Store").write_bytes(b"junk")
    with caplog.at_level("INFO", logger="ft_pipelines.core.data"):
        records = load_records("image_folder", root)
    assert len(records) == 8
    warnings = [r for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and "waving.gif" in warnings[0].getMessage()
    assert "Convert them" in warnings[0].getMessage()
    assert ".DS_Store" not in warnings[0].getMessage()  # hidden files stay INFO


def test_parquet_path_that_is_a_text_file_is_explained(tmp_path):
    path = tmp_path / "images.parquet"
    path.write_text("image,label\n")
    with pytest.raises(ValueError) as info:
        load_records("parquet", path)
    message = str(info.value)
    assert repr(str(path)) in message and "not a readable Parquet table" in message
    assert "expects ingestion.path to be a .parquet file" in message


def test_parquet_path_that_is_a_folder_of_images_points_to_image_folder(tmp_path):
    root = _folder(tmp_path / "data")
    with pytest.raises(ValueError, match=r"is a folder without \.parquet files.*image_folder"):
        load_records("parquet", root)


def test_parquet_folder_of_tables_still_loads(tmp_path):
    folder = tmp_path / "table"
    folder.mkdir()
    image = (tmp_path / "x.png")
    _png(image, seed=1)
    pd.DataFrame({"image": [image.read_bytes()], "label": ["a"]}).to_parquet(
        folder / "part-0.parquet")
    assert [r.label_name for r in load_records("parquet", folder)] == ["a"]
