"""How far the target data is from the backbone's source: BN-statistics divergence,
transferability (LogME, LEEP, NCE, H-score), domain distances (FID, MMD, EMD, PAD), the feature
extraction they share and the similarity report. Formulas: docs/references.md."""

from ft_pipelines.core.similarity.features import extract_features
from ft_pipelines.core.similarity.ranking import RANKING_COLUMNS, choose_backbone, score_backbone
from ft_pipelines.core.similarity.report import similarity_report

__all__ = [
    "RANKING_COLUMNS",
    "choose_backbone",
    "extract_features",
    "score_backbone",
    "similarity_report",
]
