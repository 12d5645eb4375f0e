from kedro.pipeline import Node, Pipeline

from ft_pipelines.pipelines.evaluation.nodes import evaluate, write_report


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(
                evaluate,
                inputs=["pretrained_model", "finetuned_model", "pruned_model", "pruning_summary",
                        "finetuned_onnx", "pruned_onnx", "pruned_int8", "export_report",
                        "images", "class_names", "params:evaluation",
                        "params:ingestion.decode_cache_dir", "params:runtime"],
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
