from kedro.pipeline import Node, Pipeline

from ft_pipelines.core.export import EXPORT_KINDS
from ft_pipelines.pipelines.predict.nodes import predict_images


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(
                predict_images,
                inputs={"export_report": "export_report", "predict": "params:predict",
                        "evaluation_metrics": "evaluation_metrics", "mlflow": "params:mlflow",
                        "finetune_plan": "finetune_plan",
                        **{name: name for name in EXPORT_KINDS}},
                outputs="predictions",
                name="predict_images",
            ),
        ],
        tags="predict",
    )
