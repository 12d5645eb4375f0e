from kedro.pipeline import Node, Pipeline

from ft_pipelines.pipelines.regularized_finetuning.nodes import compute_delta_attention, finetune


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(
                compute_delta_attention,
                inputs=["surgered_model", "images", "finetune_plan", "params:finetune",
                        "params:ingestion.decode_cache_dir", "params:runtime"],
                outputs="delta_attention",
                name="compute_delta_attention",
            ),
            Node(
                finetune,
                inputs=["surgered_model", "images", "finetune_plan", "delta_attention",
                        "params:finetune", "params:ingestion.decode_cache_dir", "params:runtime"],
                outputs=["finetuned_model", "training_history", "learning_curves_plot",
                         "lr_find_plot"],
                name="finetune",
            ),
        ],
        tags="regularized_finetuning",
    )
