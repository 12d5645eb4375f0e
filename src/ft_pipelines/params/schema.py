"""The whole parameter configuration: one block per stage, each holding its only defaults."""

from __future__ import annotations

from pydantic import Field

from ft_pipelines.core.data.settings import IngestionParams
from ft_pipelines.core.pruning.importance import ImportanceParams
from ft_pipelines.core.pruning.settings import PruningParams
from ft_pipelines.core.similarity.settings import SimilarityParams
from ft_pipelines.core.strategy.settings import StrategyParams
from ft_pipelines.core.training.settings import FinetuneParams
from ft_pipelines.core.utils.runtime import RuntimeParams
from ft_pipelines.core.utils.schema import Schema
from ft_pipelines.params.backbone_surgery import SurgeryParams
from ft_pipelines.params.evaluation import EvaluationParams, LineageParams
from ft_pipelines.params.export import ExportParams, PredictParams
from ft_pipelines.params.pretrained_backbone import BackboneParams
from ft_pipelines.params.tracking import MlflowParams


class Parameters(Schema):
    """Every ``params:<block>``; an unknown block is an error like an unknown key."""

    ingestion: IngestionParams = Field(default_factory=IngestionParams)
    backbone: BackboneParams = Field(default_factory=BackboneParams)
    similarity: SimilarityParams = Field(default_factory=SimilarityParams)
    strategy: StrategyParams = Field(default_factory=StrategyParams)
    surgery: SurgeryParams = Field(default_factory=SurgeryParams)
    finetune: FinetuneParams = Field(default_factory=FinetuneParams)
    importance: ImportanceParams = Field(default_factory=ImportanceParams)
    pruning: PruningParams = Field(default_factory=PruningParams)
    evaluation: EvaluationParams = Field(default_factory=EvaluationParams)
    lineage: LineageParams = Field(default_factory=LineageParams)
    export: ExportParams = Field(default_factory=ExportParams)
    predict: PredictParams = Field(default_factory=PredictParams)
    runtime: RuntimeParams = Field(default_factory=RuntimeParams)
    mlflow: MlflowParams = Field(default_factory=MlflowParams)
