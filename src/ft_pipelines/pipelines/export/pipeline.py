from kedro.pipeline import Node, Pipeline

from ft_pipelines.core.export import EXPORT_KINDS
from ft_pipelines.pipelines.export.nodes import export_node, write_export_report


def create_pipeline(**kwargs) -> Pipeline:
    """One node per registered exported model kind, then the export report."""
    kinds = list(EXPORT_KINDS.values())
    return Pipeline(
        [
            *(Node(export_node(kind),
                   inputs=[kind.source, "images", "class_names", "params:export",
                           "params:ingestion.decode_cache_dir"],
                   outputs=[kind.name, f"{kind.name}_check"],
                   name=kind.node_name)
              for kind in kinds),
            Node(
                write_export_report,
                inputs={"export": "params:export",
                        **{f"{kind.name}_check": f"{kind.name}_check" for kind in kinds}},
                outputs="export_report",
                name="write_export_report",
            ),
        ],
        tags="export",
    )
