from kedro.pipeline import Node, Pipeline

from ft_pipelines.pipelines.similarity_analysis.nodes import analyse_similarity


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(
                analyse_similarity,
                inputs=["pretrained_model", "images", "params:similarity",
                        "params:ingestion.decode_cache_dir", "params:runtime"],
                outputs=["similarity_metrics", "layer_divergence", "layer_divergence_plot"],
                name="analyse_similarity",
            ),
        ],
        tags="similarity_analysis",
    )
