from kedro.pipeline import Node, Pipeline

from ft_pipelines.pipelines.export.nodes import (
    export_finetuned,
    export_pruned,
    quantize_pruned,
    write_export_report,
)


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(
                export_finetuned,
                inputs=["finetuned_model", "images", "class_names", "params:export",
                        "params:ingestion.decode_cache_dir"],
                outputs=["finetuned_onnx", "finetuned_onnx_check"],
                name="export_finetuned_onnx",
            ),
            Node(
                export_pruned,
                inputs=["pruned_model", "images", "class_names", "params:export",
                        "params:ingestion.decode_cache_dir"],
                outputs=["pruned_onnx", "pruned_onnx_check"],
                name="export_pruned_onnx",
            ),
            Node(
                quantize_pruned,
                inputs=["pruned_onnx", "images", "params:export",
                        "params:ingestion.decode_cache_dir"],
                outputs=["pruned_int8", "pruned_int8_check"],
                name="quantize_pruned_int8",
            ),
            Node(
                write_export_report,
                inputs=["finetuned_onnx_check", "pruned_onnx_check", "pruned_int8_check",
                        "params:export"],
                outputs="export_report",
                name="write_export_report",
            ),
        ],
        tags="export",
    )
