"""Typed parameters: one pydantic schema per ``params:<block>``, holding the only defaults,
and the check of a whole configuration (``validate_parameters``). Nothing here imports Kedro."""

from ft_pipelines.core.data.settings import IngestionParams
from ft_pipelines.core.pruning.importance import ImportanceParams
from ft_pipelines.core.pruning.settings import PruningParams
from ft_pipelines.core.similarity.settings import SimilarityParams
from ft_pipelines.core.strategy.settings import StrategyParams
from ft_pipelines.core.training.settings import FinetuneParams
from ft_pipelines.core.utils.runtime import RuntimeParams
from ft_pipelines.params.backbone_surgery import SurgeryParams
from ft_pipelines.params.evaluation import EvaluationParams, LineageParams
from ft_pipelines.params.export import ExportParams, PredictParams
from ft_pipelines.params.pretrained_backbone import BackboneParams
from ft_pipelines.params.schema import Parameters
from ft_pipelines.params.tracking import MlflowParams
from ft_pipelines.params.validate import ParameterError, plain_parameters, validate_parameters

__all__ = [
    "BackboneParams",
    "EvaluationParams",
    "ExportParams",
    "FinetuneParams",
    "ImportanceParams",
    "IngestionParams",
    "LineageParams",
    "MlflowParams",
    "ParameterError",
    "PredictParams",
    "Parameters",
    "PruningParams",
    "RuntimeParams",
    "SimilarityParams",
    "StrategyParams",
    "SurgeryParams",
    "plain_parameters",
    "validate_parameters",
]
