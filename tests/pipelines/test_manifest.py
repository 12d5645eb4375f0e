"""Manifest mode through ``kedro run``: paths + hashes in the table, files checked later."""

import json

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from tests.conftest import SLOW
from tests.pipelines.conftest import kedro_cli, latest, run_pipelines
from tests.pipelines.test_project import make_folder

FIRST_STAGES = ["data_ingestion", "pretrained_backbone", "similarity_analysis",
                "strategy_selection"]


def manifest_params(folder):
    # 1 KiB: any folder is "too large", so the tiny test folder becomes a manifest
    return {"ingestion.source": "image_folder", "ingestion.path": str(folder),
            "ingestion.embed_bytes_max_mb": 0.001}


def test_manifest_table_then_a_changed_and_a_deleted_file_are_named(project, tmp_path):
    folder = make_folder(tmp_path / "photos", per_class=8)
    run_pipelines(project, FIRST_STAGES, **manifest_params(folder))
    table = pd.read_parquet(latest(project, "03_primary/images.parquet"))
    assert table["image"].isna().all()
    assert {"sha256", "file_bytes"} <= set(table.columns)
    assert table["origin"].map(lambda o: o.startswith(str(folder))).all()
    plan = json.loads(latest(project, "05_model_input/finetune_plan.json").read_text())
    assert plan["num_classes"] == 2

    changed, deleted = folder / "cats" / "3.png", folder / "dogs" / "5.png"
    changed.write_bytes(deleted.read_bytes())
    deleted.unlink()
    with pytest.raises(FileNotFoundError) as raised:
        run_pipelines(project, ["similarity_analysis"], **manifest_params(folder))
    message = str(raised.value)
    assert f"{changed}: changed since ingestion" in message
    assert f"{deleted}: deleted" in message


def test_small_folders_stay_embedded(project, tmp_path):
    folder = make_folder(tmp_path / "photos", per_class=6)
    run_pipelines(project, ["data_ingestion"], **{"ingestion.source": "image_folder",
                                                  "ingestion.path": str(folder)})
    table = pd.read_parquet(latest(project, "03_primary/images.parquet"))
    assert table["image"].notna().all() and "sha256" not in table.columns


def _three_classes(root, per_class: int):
    """3 classes of textured images (a solid colour per class would be too easy to matter)."""
    rng = np.random.default_rng(0)
    for k, name in enumerate(("red", "green", "blue")):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            pixels = rng.integers(0, 120, (48, 56, 3), dtype=np.uint8)
            pixels[..., k] += 120
            Image.fromarray(pixels).save(root / name / f"{i}.png")
    return root


@SLOW
def test_the_whole_ci_chain_runs_in_manifest_mode_with_8_images_per_class(project, tmp_path):
    """Both journeys that crashed after all the training: a manifest folder ('MappedImages'
    has no attribute 'dtype' in evaluation) and 3 classes x 8 images (the SVC baseline's 5
    Platt folds for classes of ~5 training images)."""
    folder = _three_classes(tmp_path / "photos", per_class=8)
    result = kedro_cli(project, "run", "--env", "ci", "--params=" + ",".join(
        f"{key}={value}" for key, value in manifest_params(folder).items()))
    assert result.returncode == 0, result.printed[-4000:]
    table = pd.read_parquet(latest(project, "03_primary/images.parquet"))
    assert table["image"].isna().all()  # the whole chain ran on the manifest's shards
    metrics = json.loads(latest(project, "08_reporting/evaluation_metrics.json").read_text())
    assert {"finetuned", "pruned", "pixels_svc", "finetuned_onnx"} <= set(metrics)
    assert "Platt scaling on" in metrics["pixels_svc"]["note"]
    report = latest(project, "08_reporting/report.md").read_text()
    assert "`pixels_svc`: Platt scaling on" in report and "Which model to ship" in report
