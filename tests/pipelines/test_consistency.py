"""Run-consistent inputs: a run loads the versions it saved itself even when another run saved
newer ones meanwhile, and a stage handed a model and images from different runs stops with an
error naming both versions and the ``--load-versions`` that fixes it (issue 11, point 4)."""

from __future__ import annotations

import json
import re
from pathlib import Path

from kedro.framework.hooks import hook_impl
from kedro.framework.session import KedroSession

from tests.pipelines.conftest import error_chain, nested, run_error, run_pipelines


class LoadedImages:
    """Records how many rows every load of ``images`` returned."""

    def __init__(self) -> None:
        self.rows: list[int] = []

    @hook_impl
    def after_dataset_loaded(self, dataset_name: str, data) -> None:
        if dataset_name == "images":
            self.rows.append(len(data))


def _lineage(project: Path, save_version: str) -> dict:
    path = project / "data/ci/08_reporting/lineage.json" / save_version / "lineage.json"
    return json.loads(path.read_text())


def test_a_run_loads_its_own_images_although_another_run_saved_newer_ones(project):
    # Two runs started together: A's version timestamp is older, B saves first, A saves last.
    run_a = KedroSession.create(project_path=project, env="ci",
                                runtime_params=nested({"ingestion.max_per_class": 6}))
    run_b = KedroSession.create(project_path=project, env="ci",
                                runtime_params=nested({"ingestion.max_per_class": 9}))
    with run_b:
        run_b.run(pipeline_names=["data_ingestion"])
    spy = LoadedImages()
    with run_a:
        run_a._hook_manager.register(spy)
        run_a.run(pipeline_names=["data_ingestion", "pretrained_backbone",
                                  "similarity_analysis"])
    versions = sorted(p.name for p in (project / "data/ci/03_primary/images.parquet").iterdir())
    assert len(versions) == 2
    record = _lineage(project, versions[0])  # run A wrote the older timestamp
    assert record["saved"]["images"]["version"] == versions[0]
    assert record["loaded"]["images"]["version"] == versions[0]  # not B's newer version
    # every node that read images (backbone ranking, similarity) got A's 6 images per class,
    # not B's 9
    assert spy.rows and set(spy.rows) == {10 * 6}


def test_a_stage_only_run_on_data_of_another_run_names_versions_and_the_fix(project):
    # The case: a 2-class chain up to surgery, then a 10-class ingestion, then only the
    # fine-tuning stage (which used to die with "IndexError: Target 2 is out of bounds").
    run_pipelines(project, ["data_ingestion", "pretrained_backbone", "similarity_analysis",
                            "strategy_selection", "backbone_surgery"],
                  **{"ingestion.source": "lfw_faces"})
    run_pipelines(project, ["data_ingestion"])  # sklearn digits: 10 classes
    images = sorted(p.name for p in (project / "data/ci/03_primary/images.parquet").iterdir())
    surgered = sorted(
        p.name for p in (project / "data/ci/06_models/surgered_model.safetensors").iterdir())

    error = run_error(project, ["regularized_finetuning"])  # in-process: kedro run's session
    assert "outofbounds" not in error_chain(error)
    assert type(error).__name__ == "InputMismatchError", error_chain(error)
    message = " ".join(str(error).split())
    assert (f"surgered_model (version {surgered[0]}) is for 2 classes [face, non_face] but "
            "images holds 10 classes") in message
    assert f"images version {images[1]}" in message
    fix = re.search(r"--load-versions=images:(\S+)", message)
    assert fix and fix.group(1) == images[0]

    # the suggested pin works
    with KedroSession.create(project_path=project, env="ci") as session:
        session.run(pipeline_names=["regularized_finetuning"],
                    load_versions={"images": fix.group(1)})
    finetuned = project / "data/ci/06_models/finetuned_model.safetensors"
    assert len(list(finetuned.iterdir())) == 1
