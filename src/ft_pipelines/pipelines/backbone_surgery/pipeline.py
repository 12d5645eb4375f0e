from kedro.pipeline import Node, Pipeline

from ft_pipelines.pipelines.backbone_surgery.nodes import perform_surgery


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(
                perform_surgery,
                inputs=["pretrained_model", "pilot_model", "finetune_plan", "class_names",
                        "params:surgery"],
                outputs=["surgered_model", "surgery_summary"],
                name="perform_surgery",
            ),
        ],
        tags="backbone_surgery",
    )
