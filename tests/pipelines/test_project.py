import json
import shutil

import pytest
from PIL import Image

from ft_pipelines.pipeline_registry import register_pipelines
from tests.pipelines.conftest import kedro_cli, latest, run_pipelines

STAGES = ["data_ingestion", "pretrained_backbone", "similarity_analysis", "strategy_selection",
          "backbone_surgery", "regularized_finetuning", "channel_importance", "pruning",
          "evaluation", "export"]
ON_DEMAND = ["predict"]  # registered, not in __default__


def test_registry_lists_every_stage_and_default(project):
    pipelines = register_pipelines()
    assert set(STAGES) | set(ON_DEMAND) | {"__default__"} == set(pipelines)
    default_nodes = {n.name for n in pipelines["__default__"].nodes}
    for stage in STAGES:
        assert {n.name for n in pipelines[stage].nodes} <= default_nodes
    for stage in ON_DEMAND:
        assert not {n.name for n in pipelines[stage].nodes} & default_nodes


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


def make_folder(root, per_class=6):
    for label, colour in (("cats", "red"), ("dogs", "blue")):
        (root / label).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            Image.new("RGB", (40 + i, 40), colour).save(root / label / f"{i}.png")
    return root


def truncate(root):
    (root / "dogs" / "broken.png").write_bytes((root / "dogs" / "0.png").read_bytes()[:40])


def not_an_image(root):
    (root / "cats" / "notes.png").write_text("this is not a picture")


def empty_class(root):
    (root / "birds").mkdir()


def single_class(root):
    shutil.rmtree(root / "dogs")


def too_few(root):
    (root / "owls").mkdir()
    Image.new("RGB", (30, 30), "green").save(root / "owls" / "only.png")


BREAKAGES = [(truncate, "broken.png"), (not_an_image, "notes.png"), (empty_class, "birds"),
             (single_class, "Only one class found: .cats"), (too_few, "owls")]


@pytest.mark.parametrize(("breakage", "culprit"), BREAKAGES,
                         ids=[b.__name__ for b, _ in BREAKAGES])
def test_bad_input_fails_clearly_and_keeps_the_previous_version(project, tmp_path, breakage,
                                                                culprit):
    folder = make_folder(tmp_path / "photos")
    params = {"ingestion.source": "image_folder", "ingestion.path": str(folder)}
    run_pipelines(project, ["data_ingestion"], **params)
    good = latest(project, "03_primary/images.parquet")
    good_bytes = good.read_bytes()
    breakage(folder)
    with pytest.raises(ValueError, match=culprit):
        run_pipelines(project, ["data_ingestion"], **params)
    assert latest(project, "03_primary/images.parquet") == good
    assert good.read_bytes() == good_bytes


def test_first_stages_on_a_users_image_folder(project, tmp_path):
    folder = make_folder(tmp_path / "photos", per_class=8)
    run_pipelines(project, ["data_ingestion", "pretrained_backbone", "similarity_analysis",
                            "strategy_selection"],
                  **{"ingestion.source": "image_folder", "ingestion.path": str(folder)})
    plan = json.loads(latest(project, "05_model_input/finetune_plan.json").read_text())
    assert plan["num_classes"] == 2 and plan["strategy"] in ("head_only", "partial_finetune")


@pytest.mark.parametrize(("source", "expected"), [("sklearn_digits", "dissimilar"),
                                                  ("lfw_faces", "similar")])
def test_plan_similarity_on_bundled_demos(project, source, expected):
    run_pipelines(project, ["data_ingestion", "pretrained_backbone", "similarity_analysis",
                            "strategy_selection"],
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
        perform_surgery(bundled_backbone, bundled_backbone, plan, ["a", "b", "c", "d"], {})


def test_kedro_registry_list_cli_names_every_stage(project):
    result = kedro_cli(project, "registry", "list")  # plugins included
    assert result.returncode == 0, result.printed
    listed = {line.strip()[2:] for line in result.output.splitlines()
              if line.strip().startswith("- ")}
    assert set(STAGES) | set(ON_DEMAND) | {"__default__"} <= listed
