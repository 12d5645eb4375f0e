from kedro.pipeline import Node, Pipeline

from ft_pipelines.pipelines.pretrained_backbone.nodes import load_backbone


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [Node(load_backbone, "params:backbone", "pretrained_model", name="load_backbone")],
        tags="pretrained_backbone",
    )
