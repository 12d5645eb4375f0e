"""Tests for ft_pipelines.core.data: sources, validation, splits, decoding and its cache."""

from __future__ import annotations

import io
import random
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from ft_pipelines.core.data import (
    ImageRecord,
    build_images_table,
    decode_images,
    decoding,
    load_records,
    validate_records,
)
from ft_pipelines.core.data.decoding import cached_decode

# (mode, extension, Pillow format): every mode and every format, in combinations each keeps.
VARIANTS = (
    ("L", "png", "PNG"),
    ("RGB", "jpg", "JPEG"),
    ("RGBA", "png", "PNG"),
    ("P", "bmp", "BMP"),
    ("RGB", "webp", "WEBP"),
    ("RGBA", "tiff", "TIFF"),
    ("L", "jpeg", "JPEG"),
    ("P", "png", "PNG"),
    ("L", "tif", "TIFF"),
    ("RGBA", "webp", "WEBP"),
)


def _noise_image(rng: np.random.Generator, mode: str, size: tuple[int, int]) -> Image.Image:
    """A random (so never duplicated) image in ``mode``."""
    pixels = rng.integers(0, 256, (size[1], size[0], 4), dtype=np.uint8)
    if mode == "RGBA":
        return Image.fromarray(pixels)  # real, varying alpha
    rgb = Image.fromarray(pixels[..., :3])
    return rgb.quantize(colors=16) if mode == "P" else rgb.convert(mode)


def _encode(image: Image.Image, fmt: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


def _records(counts: dict[str, int], seed: int = 0, size: int = 8) -> list[ImageRecord]:
    rng = np.random.default_rng(seed)
    return [
        ImageRecord(_encode(_noise_image(rng, "RGB", (size, size))), name, f"{name}/{i}.png")
        for name, count in counts.items()
        for i in range(count)
    ]


def _write_folder(root: Path, counts: dict[str, int], seed: int = 0) -> Path:
    """One sub-folder per class, cycling through modes, formats and sizes (32-64 px)."""
    rng = np.random.default_rng(seed)
    for name, count in counts.items():
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            mode, ext, fmt = VARIANTS[i % len(VARIANTS)]
            size = (32 + 8 * (i % 5), 64 - 8 * (i % 3))
            (root / name / f"img_{i:02d}.{ext}").write_bytes(
                _encode(_noise_image(rng, mode, size), fmt)
            )
    return root


# -------------------------------------------------------------------------------- sources


def test_sklearn_digits_source() -> None:
    records = load_records("sklearn_digits")
    table, class_names, profile = build_images_table(validate_records(records)[0])
    assert len(table) == 1797
    assert class_names == [str(d) for d in range(10)]
    assert profile["num_classes"] == 10
    assert sorted(table["label"].unique().tolist()) == list(range(10))
    assert (table["label_name"] == table["label"].astype(str)).all()
    assert profile["width"] == {"min": 8, "median": 8.0, "max": 8}
    # The 0..16 grey levels are stretched to the full 0..255 range.
    assert max(np.asarray(Image.open(io.BytesIO(b))).max() for b in table["image"][:50]) == 255


def test_lfw_faces_source() -> None:
    records = load_records("lfw_faces")
    assert [r.label_name for r in records[:100]] == ["face"] * 100
    assert [r.label_name for r in records[100:]] == ["non_face"] * 100
    table, class_names, profile = build_images_table(records)
    assert len(table) == 200
    assert class_names == ["face", "non_face"]
    assert profile["images_per_class"] == {"face": 100, "non_face": 100}
    assert set(table["width"]) == {25} and set(table["height"]) == {25}


def test_image_folder_mixed_modes_and_formats(tmp_path: Path, caplog) -> None:
    root = _write_folder(tmp_path / "data", {"cat": 10, "dog": 10, "eel": 10})
    (root / "README.txt").write_text("not a class")
    (root / "cat" / ".DS_Store").write_bytes(b"junk")
    (root / "dog" / "notes.txt").write_text("ignored")
    with caplog.at_level("INFO", logger="ft_pipelines.core.data"):
        records = load_records("image_folder", str(root))
    assert "README.txt" in caplog.text and ".DS_Store" in caplog.text
    good, report = validate_records(records)
    assert len(good) == 30 and report.empty
    table, class_names, profile = build_images_table(good)
    assert class_names == ["cat", "dog", "eel"]
    assert set(table["mode"]) == {"L", "RGB", "RGBA", "P"}
    assert {Path(o).suffix for o in table["origin"]} == {
        ".png",
        ".jpg",
        ".jpeg",
        ".bmp",
        ".webp",
        ".tif",
        ".tiff",
    }
    assert profile["width"]["min"] == 32 and profile["height"]["max"] == 64
    assert sum(profile["channel_modes"].values()) == 30
    images, labels = decode_images(table, 40)
    assert images.shape == (30, 3, 40, 40) and images.dtype == torch.uint8
    assert labels.tolist() == table["label"].tolist()


def test_parquet_round_trip(tmp_path: Path) -> None:
    root = _write_folder(tmp_path / "data", {"a": 6, "b": 6})
    table, _, _ = build_images_table(load_records("image_folder", root))
    parquet = tmp_path / "images.parquet"
    table[["image", "label_name"]].rename(columns={"image": "png"}).to_parquet(parquet)
    records = load_records("parquet", str(parquet), {"image_column": "png",
                                                      "label_column": "label_name"})
    again, class_names, _ = build_images_table(records)
    assert class_names == ["a", "b"]
    assert sorted(again["image_id"]) == sorted(table["image_id"])
    by_id = dict(zip(again["image_id"], again["label_name"], strict=True))
    assert all(
        by_id[i] == name for i, name in zip(table["image_id"], table["label_name"], strict=True)
    )


# -------------------------------------------------------------------------------- splits


def test_splits_stratified_deterministic_and_order_independent() -> None:
    records = _records({"a": 20, "b": 10, "c": 3})
    table, _, profile = build_images_table(records, seed=7)
    per_class = profile["images_per_class_and_split"]
    assert per_class["a"] == {"train": 14, "val": 3, "test": 3}
    assert per_class["b"] == {"train": 6, "val": 2, "test": 2}
    assert per_class["c"] == {"train": 1, "val": 1, "test": 1}  # >= 3 images: one each
    shuffled = list(records)
    random.Random(3).shuffle(shuffled)
    again, _, _ = build_images_table(shuffled, seed=7)
    pd.testing.assert_frame_equal(table, again)
    other_seed, _, _ = build_images_table(records, seed=8)
    assert dict(zip(table["origin"], table["split"], strict=True)) != dict(
        zip(other_seed["origin"], other_seed["split"], strict=True)
    )
    assert table["image_id"].str.fullmatch(r"[0-9a-f]{16}").all()


def test_two_image_class_goes_to_train_and_val(caplog) -> None:
    with caplog.at_level("WARNING", logger="ft_pipelines.core.data"):
        _, _, profile = build_images_table(_records({"a": 10, "b": 2}))
    assert profile["images_per_class_and_split"]["b"] == {"train": 1, "val": 1, "test": 0}
    assert "'b' has only 2 images" in caplog.text


def test_max_per_class_caps_deterministically() -> None:
    records = _records({"a": 30, "b": 12, "c": 5})
    table, _, profile = build_images_table(records, max_per_class=10)
    assert profile["images_per_class"] == {"a": 10, "b": 10, "c": 5}
    again, _, _ = build_images_table(list(reversed(records)), max_per_class=10)
    assert set(table["origin"]) == set(again["origin"])
    assert set(table["origin"]) <= {r.origin for r in records}


@pytest.mark.parametrize(
    "fractions",
    [
        {"train": 0.8, "val": 0.3, "test": 0.1},
        {"train": 1.1, "val": -0.1},
        {"train": 0.5, "holdout": 0.5},
    ],
)
def test_bad_split_fractions_name_the_parameter(fractions: dict) -> None:
    with pytest.raises(ValueError, match="ingestion.splits"):
        build_images_table(_records({"a": 5, "b": 5}), split_fractions=fractions)


# -------------------------------------------------------------------------------- bad input


def test_unknown_source_lists_valid_values() -> None:
    with pytest.raises(ValueError, match="ingestion.source") as error:
        load_records("cifar")
    assert "'cifar'" in str(error.value) and "image_folder" in str(error.value)


def test_missing_path_names_path_and_parameter(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    for source in ("image_folder", "parquet"):
        with pytest.raises(FileNotFoundError, match="ingestion.path") as error:
            load_records(source, str(missing))
        assert str(missing) in str(error.value)
    with pytest.raises(FileNotFoundError, match="ingestion.path"):
        load_records("image_folder", None)


def test_missing_label_column_lists_columns(tmp_path: Path) -> None:
    parquet = tmp_path / "t.parquet"
    pd.DataFrame({"image": [_encode(Image.new("L", (4, 4)))], "target": ["x"]}).to_parquet(parquet)
    with pytest.raises(ValueError) as error:
        load_records("parquet", str(parquet))
    message = str(error.value)
    assert "'label'" in message and str(parquet) in message
    assert "'target'" in message and "ingestion.label_column" in message


def test_empty_class_folder_names_the_folder(tmp_path: Path) -> None:
    root = _write_folder(tmp_path / "data", {"a": 3, "b": 3})
    (root / "empty_class").mkdir()
    (root / "empty_class" / ".hidden.png").write_bytes(b"")
    with pytest.raises(ValueError, match="empty_class") as error:
        load_records("image_folder", root)
    assert "add images or remove the folder" in str(error.value)


def test_single_class_is_an_error(tmp_path: Path) -> None:
    root = _write_folder(tmp_path / "data", {"only": 4})
    with pytest.raises(ValueError, match="Only one class") as error:
        build_images_table(load_records("image_folder", root))
    assert "'only' (4 images)" in str(error.value)


def test_class_below_min_count_names_class_count_and_parameter() -> None:
    with pytest.raises(ValueError, match="ingestion.min_per_class") as error:
        build_images_table(_records({"big": 10, "tiny": 2}), min_per_class=3)
    assert "'tiny': 2" in str(error.value) and "big" not in str(error.value)


def _bad_folder(root: Path) -> dict[str, Path]:
    _write_folder(root, {"a": 5, "b": 5})
    jpeg = _encode(_noise_image(np.random.default_rng(1), "RGB", (48, 48)), "JPEG")
    png = _encode(_noise_image(np.random.default_rng(2), "RGB", (48, 48)), "PNG")
    bad = {
        "truncated_jpg": root / "a" / "truncated.jpg",
        "truncated_png": root / "b" / "truncated.png",
        "text_as_png": root / "a" / "text.png",
        "zero_byte": root / "b" / "empty.webp",
    }
    bad["truncated_jpg"].write_bytes(jpeg[: len(jpeg) // 2])
    bad["truncated_png"].write_bytes(png[: len(png) // 2])
    bad["text_as_png"].write_text("this is not an image")
    bad["zero_byte"].write_bytes(b"")
    return bad


def test_bad_images_raise_listing_every_file(tmp_path: Path) -> None:
    bad = _bad_folder(tmp_path / "data")
    with pytest.raises(ValueError, match="ingestion.on_bad_image: skip") as error:
        validate_records(load_records("image_folder", tmp_path / "data"))
    message = str(error.value)
    assert all(str(path) in message for path in bad.values())
    assert "4 of 14 images" in message and "zero-byte" in message


def test_skip_mode_reports_bad_files(tmp_path: Path, caplog) -> None:
    bad = _bad_folder(tmp_path / "data")
    with caplog.at_level("WARNING", logger="ft_pipelines.core.data"):
        good, report = validate_records(
            load_records("image_folder", tmp_path / "data"), on_bad_image="skip"
        )
    assert len(good) == 10
    assert set(report["origin"]) == {str(p) for p in bad.values()}
    assert report["reason"].str.len().gt(0).all()
    assert "Skipped 4 of 14 images" in caplog.text
    _, _, profile = build_images_table(good, bad_images=report)
    assert profile["bad_images_skipped"] == 4


def test_duplicate_across_splits_names_both_files() -> None:
    records = _records({"a": 2, "b": 5})
    copy = ImageRecord(records[0].image_bytes, "a", "a/copy_of_0.png")
    # Class 'a' has 3 images: one per split, so the two copies must land in different splits.
    with pytest.raises(ValueError, match="different splits") as error:
        build_images_table([*records, copy])
    assert "a/0.png" in str(error.value) and "a/copy_of_0.png" in str(error.value)
    assert "ingestion.on_duplicate: skip" in str(error.value)


def test_duplicate_skip_keeps_first_and_reports() -> None:
    records = _records({"a": 4, "b": 5})
    copy = ImageRecord(records[0].image_bytes, "a", "a/z_copy.png")
    table, _, profile = build_images_table([copy, *records], on_duplicate="skip")
    assert len(table) == 9 and "a/z_copy.png" not in set(table["origin"])
    assert profile["duplicates_found"] == 1
    assert profile["duplicates_skipped"] == [{"origin": "a/z_copy.png", "duplicate_of": "a/0.png"}]


# -------------------------------------------------------------------------------- decoding


def test_decode_images_shapes_dtypes_and_pixels() -> None:
    solid = [
        ImageRecord(_encode(Image.new("RGB", (50, 30), (255, 0, 0))), "red", "red.png"),
        ImageRecord(_encode(Image.new("L", (32, 32), 200)), "grey", "grey.png"),
        ImageRecord(_encode(Image.new("RGB", (64, 64), (0, 0, 255)).quantize(4)), "blue", "b.png"),
    ]
    table, class_names, _ = build_images_table(solid, min_per_class=1)
    images, labels = decode_images(table, 16)
    assert images.shape == (3, 3, 16, 16) and images.dtype == torch.uint8
    assert labels.dtype == torch.int64 and labels.tolist() == table["label"].tolist()
    colour = {class_names[label]: images[i, :, 8, 8].tolist() for i, label in enumerate(labels)}
    assert colour == {"red": [255, 0, 0], "grey": [200, 200, 200], "blue": [0, 0, 255]}


def test_cached_decode_reuses_the_file(tmp_path: Path, monkeypatch) -> None:
    table, _, _ = build_images_table(load_records("lfw_faces"))
    direct_images, direct_labels = decode_images(table, 32)
    first_images, first_labels = cached_decode(table, 32, tmp_path / "cache")
    assert torch.equal(first_images, direct_images) and torch.equal(first_labels, direct_labels)
    files = list((tmp_path / "cache").iterdir())
    assert len(files) == 1 and files[0].suffix == ".safetensors"  # no temporary file left

    def no_decode(*args, **kwargs):
        raise AssertionError("decode_images called although the cache matches")

    monkeypatch.setattr(decoding, "decode_images", no_decode)
    images, labels = cached_decode(table, 32, tmp_path / "cache")
    assert torch.equal(images, first_images) and torch.equal(labels, first_labels)
    with pytest.raises(AssertionError, match="cache matches"):
        cached_decode(table, 24, tmp_path / "cache")  # another size is another cache entry


def test_one_image_under_two_labels_is_an_error_naming_both_files() -> None:
    records = _records({"a": 4, "b": 5})
    relabelled = ImageRecord(records[0].image_bytes, "b", "b/same_as_a0.png")
    with pytest.raises(ValueError, match="appear under different labels") as error:
        build_images_table([*records, relabelled])
    message = str(error.value)
    assert "a/0.png (a) = b/same_as_a0.png (b)" in message
    assert "ingestion.on_duplicate: skip" in message


def test_skip_leaves_out_every_copy_of_an_image_under_two_labels(caplog) -> None:
    records = _records({"a": 4, "b": 5})
    relabelled = ImageRecord(records[0].image_bytes, "b", "b/same_as_a0.png")
    with caplog.at_level("WARNING", logger="ft_pipelines.core.data"):
        table, _, profile = build_images_table([*records, relabelled], on_duplicate="skip")
    assert not {"a/0.png", "b/same_as_a0.png"} & set(table["origin"]) and len(table) == 8
    assert {d["origin"] for d in profile["duplicates_skipped"]} == {"a/0.png",
                                                                     "b/same_as_a0.png"}
    assert "Left out 2 images that appear under different labels" in caplog.text
