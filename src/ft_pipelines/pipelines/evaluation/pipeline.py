from kedro.pipeline import Node, Pipeline

from ft_pipelines.core.export import EXPORT_KINDS
from ft_pipelines.pipelines.evaluation.nodes import evaluate, write_report


def _same_names(*datasets: str) -> dict[str, str]:
    return {name: name for name in datasets}


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(
                evaluate,
                inputs={**_same_names("pretrained_model", "finetuned_model", "pruned_model",
                                      "pruning_summary", "export_report", "images",
                                      "class_names", *EXPORT_KINDS),
                        "evaluation": "params:evaluation",
                        "decode_cache_dir": "params:ingestion.decode_cache_dir",
                        "runtime": "params:runtime"},
                outputs=["evaluation_metrics", "comparison_table", "confusion_matrices"],
                name="evaluate_models",
            ),
            Node(
                write_report,
                inputs=["finetune_plan", "evaluation_metrics", "pruning_summary",
                        "dataset_profile", "export_report"],
                outputs="evaluation_report",
                name="write_report",
            ),
        ],
        tags="evaluation",
    )
