"""Bad input through ``kedro run``: each case either works (and says what it did) or stops with a
message naming the file or parameter and the fix (issue 11, points 6 and 7). One case goes
through ``kedro run``'s command line and reads what it prints; the others run through the same
Kedro session, hooks and runner. All in-process (a new interpreter costs ~8 s of imports each)."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from safetensors import safe_open
from safetensors.torch import save_file

from ft_pipelines.core.models import save_model_file
from ft_pipelines.core.models.artifact import SPEC_KEY
from ft_pipelines.hooks import InvalidParameters
from tests.pipelines.conftest import (
    error_chain,
    kedro_cli,
    last_error,
    latest,
    run_error,
    run_pipelines,
    squeezed,
)


def _noise_png(path: bytes | Path, seed: int) -> None:
    pixels = np.random.default_rng(seed).integers(0, 256, (24, 24, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(os.fsdecode(path), format="PNG")


def _image_folder(root: Path, per_class: int = 6) -> Path:
    for n, name in enumerate(("cats", "dogs")):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            _noise_png(root / name / f"{i}.png", seed=100 * n + i)
    return root


def test_non_utf8_file_names_and_animated_gifs_are_ingested_with_warnings(project, tmp_path,
                                                                            caplog):
    root = _image_folder(tmp_path / "photos")
    _noise_png(os.fsencode(root) + b"/cats/caf\xe9.png", seed=7)
    frames = [Image.new("RGB", (16, 16), c) for c in ("red", "green", "blue")]
    frames[0].save(root / "dogs" / "waving.gif", save_all=True, append_images=frames[1:])
    with caplog.at_level(logging.INFO):
        run_pipelines(project, ["data_ingestion"], **{"ingestion.source": "image_folder",
                                                      "ingestion.path": str(root)})
    warnings = squeezed(" ".join(r.getMessage() for r in caplog.records
                                 if r.levelno == logging.WARNING))
    assert squeezed("are not valid UTF-8") in warnings and "caf\\xe9.png" in warnings, warnings
    assert squeezed("Skipping 1 files in") in warnings and "waving.gif" in warnings
    table = pd.read_parquet(latest(project, "03_primary/images.parquet"))
    assert len(table) == 13 and str(root / "cats" / "caf\\xe9.png") in set(table["origin"])


def _error(result) -> str:
    """The exception line(s) at the end of a failed run, without the traceback's source lines."""
    output = result.printed
    return squeezed(output[output.rindex("Error: "):])


def test_a_parquet_path_that_is_a_text_file_is_explained(project, tmp_path):
    # (a folder without .parquet files: tests/core/data/test_source_errors.py)
    path = tmp_path / "images.parquet"
    path.write_text("image,label\n1,2\n")
    result = kedro_cli(project, "run", "--env", "ci", "--pipelines=data_ingestion",
                       f"--params=ingestion.source=parquet,ingestion.path={path}")
    assert result.returncode != 0
    output = _error(result)
    expected = "is a file holding data that is not a readable Parquet table"
    assert squeezed(f"ingestion.path {str(path)!r} {expected}") in output, output[-3000:]
    assert squeezed("expects ingestion.path to be a .parquet file") in output


def test_an_unknown_torchvision_architecture_is_blamed_on_the_architecture(project):
    output = last_error(run_error(project, ["data_ingestion", "pretrained_backbone"],
                                  **{"backbone.source": "torchvision",
                                     "backbone.architecture": "resnet1B"}))
    assert squeezed("Unknown torchvision architecture 'resnet1B' (backbone.architecture)") \
        in output, output[-3000:]
    assert squeezed("Did you mean: resnet18") in output
    assert "backbone.weights" not in output


def test_a_crafted_artifact_is_refused_as_the_starting_network(project, tmp_path,
                                                              bundled_backbone):
    path = tmp_path / "crafted.safetensors"
    save_model_file(bundled_backbone, path)
    with safe_open(str(path), framework="pt") as handle:
        spec = json.loads(handle.metadata()[SPEC_KEY])
        tensors = {k: handle.get_tensor(k) for k in handle.keys()}  # noqa: SIM118
    spec["backbone"]["architecture"] = "hf-hub:attacker/config-only"
    save_file(tensors, str(path), metadata={SPEC_KEY: json.dumps(spec)})
    output = error_chain(run_error(project, ["data_ingestion", "pretrained_backbone"],
                                   **{"backbone.source": "artifact", "backbone.path": str(path)}))
    assert squeezed(f"{path}: refusing to load this model artifact") in output, output[-3000:]
    assert squeezed("'hf-hub:attacker/config-only' (backbone.architecture)") in output


def test_delta_with_head_only_training_names_the_parameter_and_the_fix(project):
    run_pipelines(project, ["data_ingestion", "pretrained_backbone", "similarity_analysis",
                            "strategy_selection", "backbone_surgery"],
                  **{"strategy.override": "head_only", "similarity.max_images": 40})
    output = last_error(run_error(project, ["regularized_finetuning"],
                                  **{"finetune.regularizer.name": "delta"}))
    assert "nofeaturemaps" not in output  # the old RuntimeError from inside the trainer
    assert squeezed("finetune.regularizer.name='delta' needs trainable backbone blocks") \
        in output, output[-3000:]
    assert squeezed("Fix: finetune.regularizer.name: l2 (or none)") in output


@pytest.mark.parametrize(("params", "expected"), [
    ({"runtime.device": "cuda"}, "`runtime.device`: runtime.device='cuda' but this torch build "
                                 "sees no CUDA device"),
    ({"runtime.precision": "fp16"}, "`runtime.precision`: runtime.precision=fp16 needs a CUDA "
                                    "device"),
])
def test_cuda_settings_on_a_machine_without_cuda_stop_the_session_before_any_node(
        project, monkeypatch, params, expected):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    error = run_error(project, ["data_ingestion", "pretrained_backbone"], **params)
    assert isinstance(error, InvalidParameters)
    assert squeezed(expected) in squeezed(str(error))
    assert not (project / "data").exists()  # no node ran, no version was written


def test_a_malformed_load_versions_is_explained_not_none(project):
    result = kedro_cli(project, "run", "--env", "ci", "--pipelines=pruning",
                       "--load-versions=finetuned_model")
    assert result.returncode == 2 and result.exception is None
    assert "NoneType" not in result.printed
    assert squeezed("Invalid value for '--load-versions'") in squeezed(result.output)
    assert squeezed("e.g. --load-versions=finetuned_model:2026-01-01T00.00.00.000Z") in \
        squeezed(result.output)


def test_predict_in_a_fresh_clone_says_how_to_export_first(project, tmp_path):
    _noise_png(tmp_path / "x.png", seed=1)
    error = error_chain(run_error(project, ["predict"], **{"predict.path": str(tmp_path)}))
    assert "VersionNotFoundError: Did not find" not in error
    assert squeezed("is stored yet: export a model first: `kedro run`") in error
    assert squeezed("`kedro run --pipelines=export`") in error
