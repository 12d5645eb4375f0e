"""Project pipelines: every stage under ``pipelines/`` plus ``__default__`` chaining them."""

from kedro.framework.project import find_pipelines
from kedro.pipeline import Pipeline

# Not part of the default chain: they need input the chain does not make (predict.path).
ON_DEMAND = ("predict",)


def register_pipelines() -> dict[str, Pipeline]:
    pipelines = find_pipelines()
    chained = [p for name, p in pipelines.items() if name not in ON_DEMAND]
    pipelines["__default__"] = sum(chained, Pipeline([]))
    return pipelines
