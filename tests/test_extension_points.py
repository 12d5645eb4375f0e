"""The "How to add" recipes of docs/architecture.md, end to end: each registers a toy entry the
way a user would (one registration), the parameter schema accepts its name and settings, and
the stage's node runs it (an exported model kind: its node, its stored file, predict with
it). Registries are restored after each test (monkeypatch)."""

from __future__ import annotations

import io
import json

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from pydantic import Field
from torch import Tensor, nn

from ft_pipelines.core.data import DATA_SOURCES, DataSource, ImageRecord
from ft_pipelines.core.export import EXPORT_KINDS, ExportKind
from ft_pipelines.core.export.builders import export_fp32
from ft_pipelines.core.models import BACKBONE_SOURCES, BackboneSource
from ft_pipelines.core.pruning import IMPORTANCE_METHODS, ImportanceMethod
from ft_pipelines.core.regularizers import REGULARIZERS, Regularizer, RegularizerEntry
from ft_pipelines.core.utils.schema import Schema
from ft_pipelines.params import ParameterError, Parameters, validate_parameters
from ft_pipelines.pipelines.data_ingestion.nodes import ingest_images
from ft_pipelines.pipelines.pretrained_backbone.nodes import load_backbone
from ft_pipelines.pipelines.pruning.nodes import prune
from ft_pipelines.pipelines.regularized_finetuning.nodes import finetune
from tests.conftest import CI_CHAIN
from tests.core.training.tiny import register_tiny_layout, tiny_model

CLASSES = ("red", "green", "blue")


def _png(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def _load_colours(_path, _settings) -> list[ImageRecord]:
    """A toy source: noise images whose class is their brighter colour channel."""
    rng = np.random.default_rng(0)
    records = []
    for index in range(36):
        pixels = rng.integers(0, 128, (32, 32, 3), dtype=np.uint8)
        pixels[..., index % 3] += 120
        records.append(ImageRecord(_png(pixels), CLASSES[index % 3], f"colours:{index}"))
    return records


@pytest.fixture()
def colours(monkeypatch) -> pd.DataFrame:
    """How to add a data source: a loader and one registration."""
    monkeypatch.setitem(DATA_SOURCES, "colours", DataSource("colours", _load_colours))
    parameters = validate_parameters({"ingestion": {"source": "colours", "min_per_class": 2}})
    table, class_names, profile, _ = ingest_images(parameters.ingestion)
    assert class_names == sorted(CLASSES) and profile["source"] == "colours"
    return table


def test_a_registered_data_source_is_ingested(colours):
    assert len(colours) == 36 and set(colours["split"]) == {"train", "val", "test"}
    with pytest.raises(ParameterError, match="`ingestion.source`: must be one of .*'colours'"):
        validate_parameters({"ingestion": {"source": "colour"}})  # a typo names the choices


def _tiny(monkeypatch) -> nn.Module:
    register_tiny_layout(monkeypatch)
    return tiny_model(classes=3)


class L1Settings(Schema):
    gamma: float = Field(default=0.001, ge=0)


class L1Penalty(Regularizer):
    """A toy regulariser: gamma * sum |w| over the trainable kernels."""

    name = "l1"

    def __init__(self, model: nn.Module, gamma: float) -> None:
        self.gamma = gamma
        self.params = [p for p in model.parameters() if p.requires_grad and p.dim() > 1]

    def penalty(self, model: nn.Module, inputs: Tensor) -> Tensor:
        return self.gamma * sum(p.abs().sum() for p in self.params)


def test_a_registered_regulariser_is_validated_and_trained_with(monkeypatch, colours):
    """How to add a regulariser: a module with its settings and builder, one registration."""
    entry = RegularizerEntry("l1", L1Settings, lambda model, _anchor, s, _att: L1Penalty(
        model, s.gamma))
    monkeypatch.setitem(REGULARIZERS, "l1", entry)
    parameters = validate_parameters({"finetune": {
        "regularizer": {"name": "l1", "gamma": 0.01}, "batch_size": 12, "progress": False,
        "resume": False, "epochs": 1}})
    with pytest.raises(ParameterError, match="`finetune.regularizer.alpha`: does not apply to "
                                             r"regulariser l1 \(it takes: gamma\)"):
        validate_parameters({"finetune": {"regularizer": {"name": "l1", "alpha": 0.1}}})
    plan = {"epochs": 1, "learning_rates": {"pretrained": 0.01, "new": 0.05},
            "regularizer": {"name": "l2", "beta": 0.0001}}
    model, history, *_ = finetune(_tiny(monkeypatch), colours, plan,
                                 pd.DataFrame(), parameters.finetune, None, parameters.runtime)
    assert set(history["regularizer"]) == {"l1"} and (history["reg_term"] > 0).all()


def _first_channels(model, _data, layers, _settings, _runtime):
    """A toy importance: earlier channels matter more (deterministic, no data)."""
    modules = dict(model.named_modules())
    return {name: torch.arange(modules[name].num_features, 0, -1).float()
            for name in layers}, None


def test_a_registered_importance_method_prunes(monkeypatch, colours):
    """How to add an importance method: a scorer and one registration."""
    monkeypatch.setitem(IMPORTANCE_METHODS, "first_channels",
                        ImportanceMethod("first_channels", _first_channels))
    parameters = validate_parameters({
        "pruning": {"importance": "first_channels", "target": "channels", "ratio": 0.3,
                    "steps": 1, "recovery_epochs": 0, "finetune_epochs": 1, "round_to": None,
                    "min_feature_channels": 1, "max_val_drop": 100.0, "distill": None},
        "finetune": {"resume": False}})
    model = _tiny(monkeypatch)
    pruned, summary, *_ = prune(model, pd.DataFrame(), colours, parameters.pruning,
                                parameters.finetune, None, parameters.runtime)
    assert summary["importance"] == "first_channels"
    assert pruned.conv1.out_channels < model.conv1.out_channels


def test_a_registered_backbone_source_loads(monkeypatch):
    """How to add a backbone source: a loader and one registration."""
    register_tiny_layout(monkeypatch)
    monkeypatch.setitem(BACKBONE_SOURCES, "tiny", BackboneSource(
        "tiny", lambda architecture, weights, path, library, size, name: tiny_model(classes=5)))
    parameters = validate_parameters({"backbone": {"source": "tiny"}})
    chosen = pd.DataFrame([{"chosen": True, "source": "tiny", "architecture": "tiny_resnet",
                            "weights": None, "path": None, "library": None}])
    model = load_backbone(parameters.backbone, chosen)
    assert isinstance(model, nn.Module) and model.fc.out_features == 5
    assert Parameters.model_validate({"backbone": {"source": "tiny"}}).backbone.source == "tiny"


def _export_opset18(model, images, class_names, export, decode_cache_dir):
    """A toy kind: the fine-tuned model exported at ONNX opset 18 (same checks as opset 17)."""
    build = export_fp32("finetuned_model")
    return build(model, images, class_names, export.model_copy(update={"opset": 18}),
                 decode_cache_dir)


@pytest.fixture()
def opset18_kind(monkeypatch):
    """How to add an exported model kind: a builder and one registration. The project's
    pipelines are rebuilt with it, and again without it afterwards (Kedro caches them)."""
    from kedro.framework.project import pipelines

    kind = ExportKind("finetuned_opset18", "finetuned_model", _export_opset18, pruned=False,
                      preference=3)
    monkeypatch.setitem(EXPORT_KINDS, kind.name, kind)
    pipelines.configure("ft_pipelines.pipeline_registry")
    yield kind
    monkeypatch.undo()
    pipelines.configure("ft_pipelines.pipeline_registry")


@CI_CHAIN
def test_a_registered_export_kind_is_exported_stored_and_predicted_with(
        ci_chain_copy, opset18_kind, tmp_path):
    from kedro.framework.project import pipelines

    from tests.pipelines.conftest import kedro_cli, latest

    assert validate_parameters({"predict": {"model": "finetuned_opset18"}})
    with pytest.raises(ParameterError, match="`predict.model`: must be one of .*'finetuned_op"):
        validate_parameters({"predict": {"model": "finetuned_opset"}})
    evaluated = next(node for node in pipelines["evaluation"].nodes if node.name ==
                     "evaluate_models")
    assert "finetuned_opset18" in evaluated.inputs and "finetuned_opset18" in next(
        iter(pipelines["predict"].nodes)).inputs
    project = ci_chain_copy
    result = kedro_cli(project, "run", "--env", "ci", "--nodes", "export_finetuned_opset18")
    assert result.returncode == 0, result.printed[-3000:]
    stored = latest(project, "06_models/finetuned_opset18.onnx")  # no catalog.yml entry
    assert json.loads(stored.with_suffix(".json").read_text())["opset"] == 18
    Image.new("RGB", (16, 16), "white").save(tmp_path / "a.png")
    result = kedro_cli(project, "run", "--env", "ci", "--pipelines", "predict", "--params",
                       f"predict.model=finetuned_opset18,predict.path={tmp_path}")
    assert result.returncode == 0, result.printed[-3000:]
    table = pd.read_parquet(latest(project, "07_model_output/predictions.parquet"))
    assert table["model"].str.startswith("finetuned_opset18@").all()
