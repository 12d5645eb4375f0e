"""The export and predict stages through Kedro: the session's real ``kedro run --env ci`` chain,
then ``predict`` on new images exactly as a user types it; the other tests call the nodes
directly."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from ft_pipelines.core.export import EXPORT_KINDS, evaluated_recommendation
from ft_pipelines.core.export.artifact import NotExported
from ft_pipelines.core.export.exporter import export_onnx
from ft_pipelines.params import ExportParams, ParameterError, PredictParams, validate_parameters
from ft_pipelines.pipeline_registry import register_pipelines
from ft_pipelines.pipelines.export.nodes import write_export_report
from ft_pipelines.pipelines.predict.nodes import predict_images
from tests.conftest import CI_CHAIN
from tests.core.export.conftest import CLASSES, MEAN, SIZE, STD, tiny_net
from tests.pipelines.conftest import CliResult, kedro_cli, latest, run_pipelines

PREDICT = {"path": None, "model": "auto", "batch_size": 4, "image_column": "image",
           "file_column": "file", "threads": 1}


def kedro(project: Path, *args: str) -> CliResult:
    result = kedro_cli(project, "run", "--env", "ci", *args)
    assert result.returncode == 0, result.printed[-4000:]
    return result


def new_images(root: Path) -> Path:
    """12 unlabelled digit-like images in nested folders, and one truncated file."""
    rng = np.random.default_rng(0)
    for index in range(12):
        folder = root / f"batch{index % 3}" / ("nested" if index % 2 else "")
        folder.mkdir(parents=True, exist_ok=True)
        pixels = rng.integers(0, 255, (8 + index, 8 + index), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"img{index}.png")
    good = (root / "batch0" / "img0.png").read_bytes()
    (root / "batch1" / "truncated.png").write_bytes(good[: len(good) // 2])
    return root


def test_export_is_in_the_default_chain_and_predict_is_not(project):
    pipelines = register_pipelines()
    default = {n.name for n in pipelines["__default__"].nodes}
    assert {n.name for n in pipelines["export"].nodes} <= default
    assert not {n.name for n in pipelines["predict"].nodes} & default
    assert "images" not in pipelines["predict"].inputs()  # no training data needed


@CI_CHAIN
def test_ci_chain_then_predict_on_new_images(ci_chain, ci_chain_copy, tmp_path):
    report = json.loads(latest(ci_chain, "08_reporting/export_report.json").read_text())
    for name in ("finetuned_onnx", "pruned_onnx"):
        check = report["models"][name]["verification"]["providers"]["CPUExecutionProvider"]
        assert check["passed"] and check["max_abs_logit_diff"] < 1e-3
    int8 = report["models"]["pruned_int8"]
    assert int8["precision"] == "int8" and isinstance(int8["recommended"], bool)
    assert report["recommendation"]["model"] == ("pruned_int8" if int8["recommended"]
                                                 else "pruned_onnx")
    pruned_version = latest(ci_chain, "06_models/pruned_model.safetensors").parent.name
    sidecar = json.loads(latest(ci_chain, "06_models/pruned_onnx.onnx").with_suffix(".json")
                         .read_text())
    assert sidecar["source_model"]["artifact"]["version"] == pruned_version
    assert sidecar["class_names"] == [str(i) for i in range(10)]
    # the search's input step (ci: 64 -> 40 px) is tried; the export takes the kept size
    summary = json.loads(latest(ci_chain, "08_reporting/pruning_summary.json").read_text())
    assert sidecar["input_size"] == summary["input_size_after"]
    assert {r["input_size"] for r in summary["steps"]} <= {64, 40}
    # every int8 configuration tried is a row; the kept one is the file; T fitted per file
    trials = report["int8_trials"]
    assert len(trials) >= 6 and sum(t["chosen"] for t in trials) == 1
    assert all({"latency_ms", "throughput", "top1"} <= set(t) for t in trials if "error" not in t)
    kept = next(t["config"] for t in trials if t["chosen"])
    assert int8["quantization"]["config"] == kept
    assert int8["recommended"] is False or report["int8_search"]["pays"]
    assert sidecar["temperature"] > 0
    assert report["models"]["pruned_onnx"]["calibration"]["temperature"] == sidecar["temperature"]

    # predict on top of the chain (in a copy), typed as a user types it
    project = ci_chain_copy
    folder = new_images(tmp_path / "new")
    kedro(project, "--pipelines=predict", f"--params=predict.path={folder}")
    table = pd.read_parquet(latest(project, "07_model_output/predictions.parquet"))
    assert len(table) == 13 and table["error"].notna().sum() == 1
    assert table.loc[table["error"].notna(), "file"].tolist() == ["batch1/truncated.png"]
    assert set(table["predicted_class"].dropna()) <= set(sidecar["class_names"])
    # predict.model auto labels with the evaluation's choice among the exported files
    evaluation = json.loads(latest(ci_chain, "08_reporting/evaluation_metrics.json").read_text())
    shipped = evaluated_recommendation(evaluation, report)["model"]
    assert shipped in ("finetuned_onnx", "pruned_onnx", "pruned_int8")
    assert table["model"].str.startswith(shipped + "@").all()
    assert all(len(top) == 5 for top in table["top5"].dropna())

    # export.quantize: null: no new int8 version, and auto now means the fp32 pruned model
    int8_versions = sorted((project / "data/ci/06_models/pruned_int8.onnx").iterdir())
    run_pipelines(project, ["export"], **{"export.quantize": None})
    assert sorted((project / "data/ci/06_models/pruned_int8.onnx").iterdir()) == int8_versions
    report = json.loads(latest(project, "08_reporting/export_report.json").read_text())
    assert report["recommendation"]["model"] == "pruned_onnx"
    table = pd.DataFrame({"image": [(folder / "batch0" / "img0.png").read_bytes()]})
    table.to_parquet(tmp_path / "one.parquet")
    run_pipelines(project, ["predict"], **{"predict.path": str(tmp_path / "one.parquet")})
    table = pd.read_parquet(latest(project, "07_model_output/predictions.parquet"))
    assert len(table) == 1 and table["model"].str.startswith("pruned_onnx@").all()


@pytest.fixture()
def tiny_onnx():
    return export_onnx(tiny_net(), CLASSES, SIZE, MEAN, STD)


def test_predict_asks_for_an_int8_model_that_was_never_made(tiny_onnx, tmp_path):
    Image.new("RGB", (10, 10)).save(tmp_path / "a.png")
    params = {**PREDICT, "path": str(tmp_path), "model": "pruned_int8"}
    models = {"finetuned_onnx": tiny_onnx, "pruned_onnx": tiny_onnx, "pruned_int8": None}
    with pytest.raises(ValueError, match="never been exported"):
        predict_images({}, PredictParams(**params), **models)
    table = predict_images({}, PredictParams(**{**params, "model": "auto"}), **models)
    assert table["model"].iloc[0].startswith("pruned_onnx@")


def test_quantize_setting_is_checked(tiny_onnx):
    images = pd.DataFrame()  # never read: the setting is refused first
    with pytest.raises(ParameterError, match="export.quantize"):
        validate_parameters({"export": {"quantize": "fp16"}})
    export = ExportParams(quantize=None, threads=1)
    model, check = EXPORT_KINDS["pruned_int8"].build(tiny_onnx, images, [], export, None)
    assert isinstance(model, NotExported)
    report = write_export_report(export, finetuned_onnx_check={}, pruned_int8_check=check,
                                 pruned_onnx_check={"verification": {"providers": {"CPU": {}}}})
    assert report["recommendation"]["model"] == "pruned_onnx"
    assert "no pruned_int8 model (export.quantize is null)" in report["recommendation"]["reason"]
