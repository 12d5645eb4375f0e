"""Manifest mode through ``kedro run``: paths + hashes in the table, files checked later."""

import json

import pandas as pd
import pytest

from tests.pipelines.conftest import latest, run_pipelines
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
