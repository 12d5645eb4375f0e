"""How far the target data is from the backbone's source: BN-statistics divergence,
transferability (LogME, LEEP, NCE, H-score), domain distances (FID, MMD, EMD, PAD), the feature
extraction they share and the similarity report. Formulas: docs/references.md."""

from ft_pipelines.core.similarity.bn_statistics import (
    BNStatsRecorder,
    aggregate_divergence,
    bn_divergence,
    symmetric_kl_diag_gaussian,
)
from ft_pipelines.core.similarity.domain import (
    earth_movers_distance,
    emd_domain_distance,
    emd_domain_similarity,
    frechet_distance,
    mmd_rbf,
    proxy_a_distance,
)
from ft_pipelines.core.similarity.features import Features, extract_features
from ft_pipelines.core.similarity.ranking import (
    RANKING_COLUMNS,
    choose_backbone,
    score_backbone,
)
from ft_pipelines.core.similarity.report import reference_signals, similarity_report
from ft_pipelines.core.similarity.resolution import analysis_images, resize_images
from ft_pipelines.core.similarity.transferability import (
    LogMEResult,
    h_score,
    leep,
    logme,
    logme_fit,
    nce,
)

__all__ = [
    "RANKING_COLUMNS",
    "BNStatsRecorder",
    "Features",
    "LogMEResult",
    "aggregate_divergence",
    "analysis_images",
    "bn_divergence",
    "choose_backbone",
    "earth_movers_distance",
    "emd_domain_distance",
    "emd_domain_similarity",
    "extract_features",
    "frechet_distance",
    "h_score",
    "leep",
    "logme",
    "logme_fit",
    "mmd_rbf",
    "nce",
    "proxy_a_distance",
    "reference_signals",
    "score_backbone",
    "resize_images",
    "similarity_report",
    "symmetric_kl_diag_gaussian",
]
