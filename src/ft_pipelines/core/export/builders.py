"""The built-in exported model kinds: ONNX fp32 from each PyTorch model, int8 from the pruned
ONNX model. Each builder returns the model and its checks for the export report."""

from __future__ import annotations

from typing import Any

import pandas as pd
from torch import nn

from ft_pipelines.core.data import split_image_data, stratified_subset
from ft_pipelines.core.evaluation.cost import timing_settings
from ft_pipelines.core.export.artifact import NotExported, OnnxModel
from ft_pipelines.core.export.evaluate import calibrate_onnx
from ft_pipelines.core.export.exporter import export_classifier
from ft_pipelines.core.export.int8_search import search_int8
from ft_pipelines.core.export.kinds import Builder, Check, ExportKind, register_export_kind
from ft_pipelines.core.export.report import assess_int8
from ft_pipelines.core.export.runtime import CPU, OnnxRunner
from ft_pipelines.core.export.settings import ExportParams
from ft_pipelines.core.export.verify import verify_export


def _file_summary(exported: OnnxModel) -> Check:
    sidecar = exported.sidecar
    return {"sha256": exported.sha256, "size_bytes": len(exported.model_bytes),
            "precision": exported.precision, "opset": sidecar["opset"],
            "source_model": sidecar.get("source_model")}


def export_fp32(source: str) -> Builder:
    """A builder that exports the PyTorch model ``source`` to ONNX, checks it against PyTorch on
    the test split (raises on disagreement: nothing saved) and fits its temperature."""

    def build(model: nn.Module, images: pd.DataFrame, class_names: list[str],
              export: ExportParams, decode_cache_dir: str | None
              ) -> tuple[OnnxModel, Check]:
        splits = split_image_data(images, model.backbone_cfg.input_size, decode_cache_dir)
        exported = export_classifier(model, class_names, export.opset)
        check = verify_export(model, exported, splits["test"], export.max_disagreement,
                              name=source, threads=export.threads)
        exported, calibration = calibrate_onnx(exported, splits["val"], threads=export.threads)
        return exported, {**_file_summary(exported), "verification": check,
                          "calibration": calibration}

    return build


def quantize_fp32(fp32: OnnxModel, images: pd.DataFrame, _class_names: list[str],
                  export: ExportParams, decode_cache_dir: str | None
                  ) -> tuple[OnnxModel | NotExported, Check]:
    """The int8 configurations tried on ``fp32`` (calibrated on training images, chosen on the
    validation split, timed against fp32), the kept one judged on the test split. The search
    goes to the export report's top level (``report``)."""
    if export.quantize is None:
        return NotExported("export.quantize is null"), {"skipped": "export.quantize is null"}
    splits = split_image_data(images, fp32.input_size, decode_cache_dir)
    calibration = stratified_subset(splits["train"], export.calibration_images, export.seed)
    int8, search = search_int8(fp32, calibration.images.numpy(), splits["val"],
                               splits["test"], int8_search_settings(export))
    report = {"int8_trials": search.get("trials", []),
              "int8_search": {k: v for k, v in search.items() if k != "trials"}}
    if int8 is None:
        return NotExported(search["reason"]), {"skipped": search["reason"], "report": report}
    int8, temperature = calibrate_onnx(int8, splits["val"], threads=export.threads)
    test = splits["test"].images.numpy()
    assessment = assess_int8(OnnxRunner(fp32, CPU, export.threads).logits(test),
                             OnnxRunner(int8, CPU, export.threads).logits(test),
                             splits["test"].labels.numpy(), export.max_int8_drop)
    if not search["pays"]:  # accurate or not, an int8 model that is not faster is not shipped
        assessment.update(recommended=False, reason=f"{search['reason']} "
                                                    f"(test: {assessment['reason']})")
    return int8, {**_file_summary(int8), "quantization": int8.sidecar["quantization"],
                  **assessment, "calibration": temperature, "report": report}


def int8_search_settings(export: ExportParams) -> dict[str, Any]:
    return {"configs": export.int8_configs, "histogram_images": export.histogram_calibration_images,
            "max_drop": export.max_int8_drop, "threads": export.threads,
            "batch": export.throughput_batch, **timing_settings(export)}


register_export_kind(ExportKind("finetuned_onnx", "finetuned_model",
                                export_fp32("finetuned_model"), pruned=False, preference=2))
register_export_kind(ExportKind("pruned_onnx", "pruned_model", export_fp32("pruned_model"),
                                pruned=True, preference=1))
register_export_kind(ExportKind("pruned_int8", "pruned_onnx", quantize_fp32, pruned=True,
                                preference=0, optional=True, node="quantize_pruned_int8"))
