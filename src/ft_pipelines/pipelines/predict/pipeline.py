from kedro.pipeline import Node, Pipeline

from ft_pipelines.pipelines.predict.nodes import predict_images


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(
                predict_images,
                inputs=["finetuned_onnx", "pruned_onnx", "pruned_int8", "export_report",
                        "params:predict", "evaluation_metrics", "params:mlflow"],
                outputs="predictions",
                name="predict_images",
            ),
        ],
        tags="predict",
    )
