from kedro.pipeline import Node, Pipeline

from ft_pipelines.pipelines.pruning.nodes import prune


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(
                prune,
                inputs=["finetuned_model", "channel_importance", "images", "params:pruning",
                        "params:finetune", "params:ingestion.decode_cache_dir", "params:runtime"],
                outputs=["pruned_model", "pruning_summary", "pruning_history",
                         "pruning_curves_plot", "pruning_frontier_plot"],
                name="prune_and_finetune",
            ),
        ],
        tags="pruning",
    )
