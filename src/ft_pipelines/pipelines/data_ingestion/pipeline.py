from kedro.pipeline import Node, Pipeline

from ft_pipelines.pipelines.data_ingestion.nodes import ingest_images


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(
                ingest_images,
                inputs="params:ingestion",
                outputs=["images", "class_names", "dataset_profile", "bad_image_report"],
                name="ingest_images",
            ),
        ],
        tags="data_ingestion",
    )
