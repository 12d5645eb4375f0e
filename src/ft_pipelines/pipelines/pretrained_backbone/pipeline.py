from kedro.pipeline import Node, Pipeline

from ft_pipelines.pipelines.pretrained_backbone.nodes import load_backbone, rank_backbones


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(rank_backbones,
                 ["images", "params:backbone", "params:ingestion.decode_cache_dir",
                  "params:runtime"],
                 "backbone_ranking", name="rank_backbones"),
            Node(load_backbone, ["params:backbone", "backbone_ranking"], "pretrained_model",
                 name="load_backbone"),
        ],
        tags="pretrained_backbone",
    )
