from kedro.pipeline import Node, Pipeline

from ft_pipelines.pipelines.similarity_analysis.nodes import analyse_similarity, load_backbone


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(load_backbone, "params:backbone", "pretrained_model", name="load_backbone"),
            Node(
                analyse_similarity,
                inputs=["pretrained_model", "images", "params:similarity", "params:ingestion"],
                outputs=["similarity_metrics", "layer_divergence", "layer_divergence_plot"],
                name="analyse_similarity",
            ),
        ],
        tags="similarity_analysis",
    )
