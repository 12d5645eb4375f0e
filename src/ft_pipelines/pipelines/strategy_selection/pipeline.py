from kedro.pipeline import Node, Pipeline

from ft_pipelines.pipelines.strategy_selection.nodes import plan_finetuning, select_by_pilot


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(
                plan_finetuning,
                inputs=["dataset_profile", "similarity_metrics", "layer_divergence",
                        "params:strategy", "params:finetune"],
                outputs="strategy_recommendation",
                name="plan_finetuning",
            ),
            Node(
                select_by_pilot,
                inputs=["strategy_recommendation", "pretrained_model", "images",
                        "params:strategy", "params:finetune", "params:surgery",
                        "params:ingestion.decode_cache_dir", "params:runtime"],
                outputs=["finetune_plan", "pilot_model"],
                name="select_by_pilot",
            ),
        ],
        tags="strategy_selection",
    )
