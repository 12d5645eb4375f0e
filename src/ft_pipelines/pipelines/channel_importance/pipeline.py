from kedro.pipeline import Node, Pipeline

from ft_pipelines.pipelines.channel_importance.nodes import compute_channel_importance


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(
                compute_channel_importance,
                inputs=["finetuned_model", "images", "params:importance",
                        "params:ingestion.decode_cache_dir", "params:runtime"],
                outputs=["channel_importance", "importance_plot"],
                name="compute_channel_importance",
            ),
        ],
        tags="channel_importance",
    )
