import json
import shutil

import pytest
from PIL import Image

from ft_pipelines.pipeline_registry import register_pipelines
from tests.pipelines.conftest import latest, run_pipelines

STAGES = ["data_ingestion", "similarity_analysis", "strategy_selection", "backbone_surgery",
          "regularized_finetuning", "channel_importance", "pruning", "evaluation"]


def test_registry_lists_every_stage_and_default(project):
    pipelines = register_pipelines()
    assert set(STAGES) | {"__default__"} == set(pipelines)
    default_nodes = {n.name for n in pipelines["__default__"].nodes}
    for stage in STAGES:
        assert {n.name for n in pipelines[stage].nodes} <= default_nodes


def test_running_twice_keeps_both_versions(project):
    run_pipelines(project, ["data_ingestion"])
    first = latest(project, "03_primary/images.parquet")
    first_bytes = first.read_bytes()
    run_pipelines(project, ["data_ingestion"])
    versions = sorted((project / "data/ci/03_primary/images.parquet").iterdir())
    assert len(versions) == 2
    assert first.read_bytes() == first_bytes
    lineage = sorted((project / "data/ci/08_reporting/lineage.json").iterdir())
    assert len(lineage) == 2
    record = json.loads((lineage[-1] / "lineage.json").read_text())
    assert record["status"] == "success"
    assert record["saved"]["images"]["version"] == versions[-1].name
    assert record["parameters"]["ingestion"]["source"] == "sklearn_digits"


def test_bad_image_fails_clearly_and_keeps_the_previous_version(project, tmp_path):
    folder = tmp_path / "photos"
    for label, colour in (("cats", "red"), ("dogs", "blue")):
        (folder / label).mkdir(parents=True)
        for i in range(6):
            Image.new("RGB", (40 + i, 40), colour).save(folder / label / f"{i}.png")
    run_pipelines(project, ["data_ingestion"], **{"ingestion.source": "image_folder",
                                                  "ingestion.path": str(folder)})
    good = latest(project, "03_primary/images.parquet")
    good_bytes = good.read_bytes()
    broken = folder / "dogs" / "broken.png"
    broken.write_bytes((folder / "dogs" / "0.png").read_bytes()[:40])
    with pytest.raises(ValueError, match="broken.png"):
        run_pipelines(project, ["data_ingestion"], **{"ingestion.source": "image_folder",
                                                      "ingestion.path": str(folder)})
    assert latest(project, "03_primary/images.parquet") == good
    assert good.read_bytes() == good_bytes


@pytest.mark.parametrize(("source", "expected"), [("sklearn_digits", "dissimilar"),
                                                  ("lfw_faces", "similar")])
def test_plan_similarity_on_bundled_demos(project, source, expected):
    run_pipelines(project, ["data_ingestion", "similarity_analysis", "strategy_selection"],
                  **{"ingestion.source": source, "backbone.input_size": 96})
    plan = json.loads(latest(project, "05_model_input/finetune_plan.json").read_text())
    assert plan["similarity"]["class"] == expected
    assert any("BN-statistics divergence" in reason for reason in plan["reasons"])
    shutil.rmtree(project / "data")


def test_surgery_refuses_a_plan_for_another_class_count(bundled_backbone):
    from ft_pipelines.pipelines.backbone_surgery.nodes import perform_surgery

    plan = {"num_classes": 3, "trainable_blocks": 0, "drop_last_blocks": 0,
            "reinitialize": False}
    with pytest.raises(ValueError, match="3 classes but class_names has 4"):
        perform_surgery(bundled_backbone, plan, ["a", "b", "c", "d"], {})
