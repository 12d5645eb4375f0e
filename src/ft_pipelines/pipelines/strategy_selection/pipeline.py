from kedro.pipeline import Node, Pipeline

from ft_pipelines.pipelines.strategy_selection.nodes import plan_finetuning


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(
                plan_finetuning,
                inputs=["dataset_profile", "similarity_metrics", "layer_divergence",
                        "params:strategy", "params:finetune"],
                outputs="finetune_plan",
                name="plan_finetuning",
            ),
        ],
        tags="strategy_selection",
    )
