import io
import os
import re
import signal

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from ft_pipelines.core.data import decode_images
from ft_pipelines.core.data.sources import NotAnImageFile, read_image_file
from ft_pipelines.core.export.predict import iter_inputs, predict_rows, predictions_table
from ft_pipelines.core.export.runtime import OnnxRunner, softmax
from tests.core.export.conftest import CLASSES


def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def make_folder(root):
    """Nested folders with awkward formats, a truncated file, and files predict must skip."""
    rng = np.random.default_rng(0)
    (root / "a" / "deeper").mkdir(parents=True)
    (root / "b").mkdir()
    (root / ".hidden").mkdir()
    pixels = rng.integers(0, 255, (40, 50, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(root / "a" / "rgb.png")
    Image.fromarray(rng.integers(0, 65535, (30, 30), dtype=np.uint16)).save(
        root / "a" / "16bit.png")
    Image.fromarray(rng.integers(0, 255, (30, 30, 3), dtype=np.uint8)).convert("CMYK").save(
        root / "a" / "deeper" / "cmyk.jpg")
    Image.fromarray(rng.integers(0, 255, (20, 20, 3), dtype=np.uint8)).quantize(8).save(
        root / "b" / "palette.png")
    good = (root / "a" / "rgb.png").read_bytes()
    (root / "b" / "broken.png").write_bytes(good[: len(good) // 3])
    (root / "b" / "notes.txt").write_text("not an image")
    (root / ".hidden" / "x.png").write_bytes(good)
    return root


def test_folder_rows_one_per_file_broken_one_reported(tmp_path, tiny_onnx):
    folder = make_folder(tmp_path / "new")
    table = predictions_table(predict_rows(OnnxRunner(tiny_onnx), iter_inputs(folder),
                                           batch_size=2))
    assert table["file"].tolist() == ["a/16bit.png", "a/deeper/cmyk.jpg", "a/rgb.png",
                                      "b/broken.png", "b/notes.txt", "b/palette.png"]
    broken = table.set_index("file").loc["b/broken.png"]
    assert "Truncated" in broken["error"] and pd.isna(broken["predicted_class"])
    assert "not an image type predict reads (.txt" in table.set_index("file").loc[
        "b/notes.txt", "error"]
    good = table[table["error"].isna()]
    assert len(good) == 4 and set(good["predicted_class"]) <= set(CLASSES)
    for _, row in good.iterrows():
        assert [t["class"] for t in row["top5"]][0] == row["predicted_class"]
        assert len(row["top5"]) == len(CLASSES)  # fewer than five classes: all of them
        assert row["probability"] == pytest.approx(row["top5"][0]["probability"])
        assert sum(t["probability"] for t in row["top5"]) == pytest.approx(1.0)


def test_predictions_decode_like_ingestion_and_ignore_batching(tmp_path, tiny_onnx):
    folder = make_folder(tmp_path / "new")
    runner = OnnxRunner(tiny_onnx)
    by_batch = [predictions_table(predict_rows(runner, iter_inputs(folder), batch_size=size))
                for size in (1, 3, 64)]
    for other in by_batch[1:]:
        pd.testing.assert_frame_equal(by_batch[0], other)
    files = ["a/16bit.png", "a/deeper/cmyk.jpg", "a/rgb.png", "b/palette.png"]
    table = pd.DataFrame({"image": [(folder / f).read_bytes() for f in files], "label": 0})
    images, _ = decode_images(table, tiny_onnx.input_size)
    expected = softmax(runner.logits(images.numpy())).max(axis=1)
    got = by_batch[0].set_index("file").loc[files, "probability"].to_numpy()
    assert by_batch[0]["error"].notna().sum() == 2  # broken.png and notes.txt
    np.testing.assert_allclose(got, expected, rtol=1e-6)


def test_parquet_input_with_and_without_file_names(tmp_path, tiny_onnx):
    good = png_bytes(Image.new("RGB", (20, 20), "red"))
    path = tmp_path / "new.parquet"
    table = pd.DataFrame({"img": [good, b"", good], "file": ["x.png", "empty.png", "z.png"]})
    table.to_parquet(path)
    rows = list(predict_rows(OnnxRunner(tiny_onnx), iter_inputs(path, "img"), batch_size=2))
    assert [r["file"] for r in rows] == ["x.png", "empty.png", "z.png"]
    assert [r["error"] is None for r in rows] == [True, False, True]
    pd.DataFrame({"img": [good]}).to_parquet(path)
    rows = list(predict_rows(OnnxRunner(tiny_onnx), iter_inputs(path, "img")))
    assert rows[0]["file"] == f"{path}:0"
    with pytest.raises(ValueError, match="Set predict.image_column"):
        next(iter_inputs(path, "image"))
    pd.DataFrame({"img": ["a string"]}).to_parquet(path)
    row = next(iter_inputs(path, "img"))
    assert "point predict.image_column at a column" in row[1]


def test_bad_paths_fail_clearly(tmp_path, tiny_onnx):
    with pytest.raises(ValueError, match="Set predict.path"):
        iter_inputs(None)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        iter_inputs(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="holds no image files"):
        predictions_table(predict_rows(OnnxRunner(tiny_onnx), iter_inputs(tmp_path / "empty")))


@pytest.fixture()
def alarm():
    """Fail instead of hanging: a blocked read is interrupted after 20 s."""
    def interrupt(signum, frame):
        raise TimeoutError("predict blocked on a file")

    previous = signal.signal(signal.SIGALRM, interrupt)
    signal.alarm(20)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


def _not_files(folder):
    folder.mkdir()
    os.mkfifo(folder / "x.png")
    (folder / "zero.png").symlink_to("/dev/zero")
    return folder


def test_a_fifo_or_a_device_in_a_folder_gets_a_row_with_its_error(tmp_path, tiny_onnx, alarm):
    folder = _not_files(tmp_path / "new")
    (folder / "animated.gif").write_bytes(b"GIF89a")
    Image.new("RGB", (20, 20), "red").save(folder / "y.png")
    table = predictions_table(predict_rows(OnnxRunner(tiny_onnx), iter_inputs(folder)))
    errors = table.set_index("file")["error"]
    assert "a FIFO (named pipe)" in errors["x.png"]
    assert "a character device" in errors["zero.png"]
    assert "not an image type predict reads (.gif" in errors["animated.gif"]
    assert pd.isna(errors["y.png"])


@pytest.mark.parametrize(("name", "kind"), [("x.png", "a FIFO (named pipe)"),
                                            ("zero.png", "a character device")])
def test_predict_path_naming_a_fifo_or_a_device_is_refused_unread(tmp_path, alarm, name, kind):
    path = _not_files(tmp_path / "new") / name
    with pytest.raises(ValueError, match=re.escape(f"{str(path)!r} is {kind}, not an image")):
        iter_inputs(path)


def test_an_image_file_is_read_up_to_a_bound(tmp_path):
    path = tmp_path / "big.png"
    path.write_bytes(b"\0" * 2048)
    assert read_image_file(path, max_bytes=2048) == b"\0" * 2048
    with pytest.raises(NotAnImageFile, match="larger than"):
        read_image_file(path, max_bytes=1024)


def test_predict_uses_the_sidecar_temperature(tmp_path, tiny_onnx):
    folder = make_folder(tmp_path / "new")
    hot = tiny_onnx.with_graph(tiny_onnx.model_bytes, temperature=0.25)
    plain, sharp = (predictions_table(predict_rows(OnnxRunner(m), iter_inputs(folder)))
                    for m in (tiny_onnx, hot))
    assert list(plain["predicted_class"]) == list(sharp["predicted_class"])
    good = plain["error"].isna()
    files = list(plain.loc[good, "file"])
    table = pd.DataFrame({"image": [(folder / f).read_bytes() for f in files], "label": 0})
    images, _ = decode_images(table, tiny_onnx.input_size)
    logits = OnnxRunner(tiny_onnx).logits(images.numpy())
    np.testing.assert_allclose(sharp.loc[good, "probability"].to_numpy(),
                               softmax(logits, 0.25).max(axis=1), rtol=1e-6)
    assert (sharp.loc[good, "probability"] > plain.loc[good, "probability"]).all()
