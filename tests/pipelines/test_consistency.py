"""Run-consistent inputs: a run loads the versions it saved itself even when another run saved
newer ones meanwhile, and a stage handed a model and images from different runs stops with an
error naming both versions and the ``--load-versions`` that fixes it (issue 11, point 4). So do
the stage-only mixes of issue 22 (point 3): an importance table or a surgered model made for
other inputs, images that meet another run's class_names."""

from __future__ import annotations

import json
import re
from pathlib import Path

import torch
from kedro.framework.hooks import hook_impl
from kedro.framework.session import KedroSession

from tests.conftest import CI_CHAIN
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


def _versions(project: Path, relative: str) -> list[str]:
    return sorted(p.name for p in (project / "data/ci" / relative).iterdir())


def _resave(project: Path, name: str, change) -> None:
    """A new version of ``name`` as another run would leave it: ``change`` of the latest."""
    with KedroSession.create(project_path=project, env="ci") as session:
        catalog = session.load_context().catalog
        catalog.save(name, change(catalog.load(name)))


def _refused(project: Path, pipelines: list[str], **load_versions) -> str:
    """The message of the InputMismatchError that stops ``kedro run --pipelines=...``."""
    with KedroSession.create(project_path=project, env="ci") as session:
        try:
            session.run(pipeline_names=pipelines, load_versions=load_versions)
        except Exception as error:  # noqa: BLE001 (the type is the assertion)
            assert type(error).__name__ == "InputMismatchError", error_chain(error)
            return " ".join(str(error).split())
    raise AssertionError(f"{pipelines} ran on inputs that do not belong together")


def _other_weights(model):
    with torch.no_grad():
        next(model.parameters()).add_(0.5)
    return model


@CI_CHAIN
def test_pruning_refuses_an_importance_table_computed_for_another_finetuned_model(
        ci_chain_copy):
    # The case: --pipelines=pruning with a pinned finetuned_model and the table of
    # another run. Here the other finetuned model has the same classes and data (so only the
    # table's record can tell) and other weights.
    project = ci_chain_copy
    [table] = _versions(project, "07_model_output/channel_importance.parquet")
    [scored] = _versions(project, "06_models/finetuned_model.safetensors")
    _resave(project, "finetuned_model", _other_weights)
    other = _versions(project, "06_models/finetuned_model.safetensors")[-1]

    message = _refused(project, ["pruning"], finetuned_model=other)
    assert re.search(rf"channel_importance \(version {table}\) was made for "
                     r"finetuned_model = \S+ weights \(fingerprint \w+\)", message)
    assert f"but the finetuned_model given (version {other})" in message
    assert (f"--load-versions=finetuned_model:{scored} (the finetuned_model that "
            "channel_importance was made for)") in message
    assert (f"--pipelines=channel_importance,pruning --load-versions=finetuned_model:{other}"
            in message)
    # stopped before pruning: the chain's pruned model only
    assert len(_versions(project, "06_models/pruned_model.safetensors")) == 1


@CI_CHAIN
def test_finetuning_refuses_a_surgered_model_made_for_another_plan(ci_chain_copy):
    # The case: strategy_selection with another strategy, then regularized_finetuning
    # alone (which combined the older surgered model with the new plan).
    project = ci_chain_copy
    [made_for] = _versions(project, "05_model_input/finetune_plan.json")
    plan = json.loads((project / "data/ci/05_model_input/finetune_plan.json" / made_for
                       / "finetune_plan.json").read_text())
    override = "full_finetune" if plan["strategy"] == "head_only" else "head_only"
    run_pipelines(project, ["strategy_selection"], **{"strategy.override": override})
    new_plan = _versions(project, "05_model_input/finetune_plan.json")[-1]
    [surgered] = _versions(project, "06_models/surgered_model.safetensors")

    message = _refused(project, ["regularized_finetuning"])
    assert (f"surgered_model (version {surgered}) was made for finetune_plan = a "
            f"{plan['strategy']} plan") in message
    assert (f"but the finetune_plan given (version {new_plan}) is a {override} plan"
            in message)
    assert (f"--load-versions=finetune_plan:{made_for} (the finetune_plan that surgered_model "
            "was made for)") in message
    assert ("--pipelines=backbone_surgery,regularized_finetuning (writes surgered_model anew)"
            in message)
    # stopped before the first node: no attention table, no training
    assert len(_versions(project, "07_model_output/delta_attention.parquet")) == 1
    assert len(_versions(project, "06_models/finetuned_model.safetensors")) == 1


@CI_CHAIN
def test_images_that_meet_older_class_names_stop_the_run_before_its_first_node(ci_chain_copy):
    # The case: a run stopped right after images.parquet was renamed into place, so the
    # latest images (here one class fewer) meet the class_names of an earlier run. The mismatch
    # used to surface a node later, blaming surgered_model.
    project = ci_chain_copy
    [ingested] = _versions(project, "03_primary/images.parquet")
    [names] = _versions(project, "03_primary/class_names.json")
    _resave(project, "images", lambda images: images[images["label"] < images["label"].max()])
    newer = _versions(project, "03_primary/images.parquet")[-1]

    message = _refused(project, ["backbone_surgery", "regularized_finetuning"])
    assert message.startswith(f"Inputs of this run do not belong together: images (version "
                              f"{newer}) holds 9 classes")
    assert f"but class_names (version {names}) holds 10 classes" in message
    assert f"--load-versions=images:{ingested} (the images of this class_names)" in message
    assert "surgered_model" not in message
    assert len(_versions(project, "06_models/surgered_model.safetensors")) == 1  # no node ran
