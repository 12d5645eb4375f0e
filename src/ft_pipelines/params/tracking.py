"""``mlflow``: what each run logs into its MLflow run (where it goes: conf/*/mlflow.yml)."""

from __future__ import annotations

import warnings

from pydantic import Field

from ft_pipelines.core.utils.schema import Schema


def _default_params() -> dict[str, str]:
    return {"finetune_plan": "plan"}


def _default_metrics() -> dict[str, str]:
    return {"evaluation_metrics": "", "similarity_metrics": "similarity",
            "pruning_summary": "pruning_summary"}


def _default_curves() -> dict[str, str]:
    return {"training_history": "training", "pruning_history": "pruning"}


# The user-facing key is `mlflow.register`; pydantic warns that the field shadows
# ABCMeta.register on the model class, which nothing here calls: harmless, so silenced here only.
warnings.filterwarnings("ignore", message='Field name "register" in "MlflowParams"',
                        category=UserWarning)


class RegistryParams(Schema):
    """The MLflow model of each run that evaluates (the report's model to ship)."""

    name: str | None = "ft_pipelines_classifier"  # registered model; null: logged, not registered


class PromotionParams(Schema):
    """When the registered model's alias moves to the new version."""

    alias: str = Field(default="champion", min_length=1)
    max_drop: float = Field(default=0.5, ge=0)  # test top-1 points it may lose to the champion
    force: bool = False                     # promote although the champion saw other data


class MlflowParams(Schema):
    enabled: bool = True                    # false: nothing is written to MLflow for this run
    register: bool = False                  # true: logged models become registry versions
    setup_timeout_s: float = Field(default=5, gt=0)
    params: dict[str, str] = Field(default_factory=_default_params)     # JSON -> parameters
    metrics: dict[str, str] = Field(default_factory=_default_metrics)   # JSON -> metrics
    curves: dict[str, str] = Field(default_factory=_default_curves)     # tables -> step metrics
    models: list[str] = Field(default_factory=lambda: ["finetuned_model", "pruned_model"])
    registry: RegistryParams = Field(default_factory=RegistryParams)
    promotion: PromotionParams = Field(default_factory=PromotionParams)
