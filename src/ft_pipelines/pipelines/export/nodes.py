"""Thin nodes: export to ONNX and check it against PyTorch, quantise to int8, report.

A model whose ONNX export disagrees with PyTorch makes its node raise, so nothing is saved.
"""

from __future__ import annotations

from typing import Any

import onnxruntime as ort
import pandas as pd
from torch import nn

from ft_pipelines.core.data import split_image_data, stratified_subset
from ft_pipelines.core.evaluation import timing_settings
from ft_pipelines.core.export import (
    CPU,
    NotExported,
    OnnxModel,
    OnnxRunner,
    assess_int8,
    calibrate_onnx,
    export_classifier,
    recommend,
    search_int8,
    session_options,
    verify_export,
)
from ft_pipelines.params import ExportParams


def _summary(exported: OnnxModel) -> dict[str, Any]:
    sidecar = exported.sidecar
    return {"sha256": exported.sha256, "size_bytes": len(exported.model_bytes),
            "precision": exported.precision, "opset": sidecar["opset"],
            "source_model": sidecar.get("source_model")}


def _export(model: nn.Module, name: str, images: pd.DataFrame, class_names: list[str],
            export: ExportParams, decode_cache_dir: str | None) -> tuple[OnnxModel, dict]:
    splits = split_image_data(images, model.backbone_cfg.input_size, decode_cache_dir)
    exported = export_classifier(model, class_names, export.opset)
    check = verify_export(model, exported, splits["test"], export.max_disagreement, name=name,
                          threads=export.threads)
    exported, calibration = calibrate_onnx(exported, splits["val"], threads=export.threads)
    return exported, {**_summary(exported), "verification": check, "calibration": calibration}


def export_finetuned(finetuned_model: nn.Module, images: pd.DataFrame, class_names: list[str],
                     export: ExportParams, decode_cache_dir: str | None
                     ) -> tuple[OnnxModel, dict]:
    return _export(finetuned_model, "finetuned_model", images, class_names, export,
                   decode_cache_dir)


def export_pruned(pruned_model: nn.Module, images: pd.DataFrame, class_names: list[str],
                  export: ExportParams, decode_cache_dir: str | None
                  ) -> tuple[OnnxModel, dict]:
    return _export(pruned_model, "pruned_model", images, class_names, export, decode_cache_dir)


def quantize_pruned(pruned_onnx: OnnxModel, images: pd.DataFrame, export: ExportParams,
                    decode_cache_dir: str | None) -> tuple[OnnxModel | NotExported, dict]:
    """The int8 configurations tried on the pruned model (calibrated on training images, chosen
    on the validation split, timed against fp32), the kept one judged on the test split."""
    if export.quantize is None:
        return NotExported("export.quantize is null"), {"skipped": "export.quantize is null"}
    splits = split_image_data(images, pruned_onnx.input_size, decode_cache_dir)
    calibration = stratified_subset(splits["train"], export.calibration_images, export.seed)
    int8, search = search_int8(pruned_onnx, calibration.images.numpy(), splits["val"],
                               splits["test"], int8_search_settings(export))
    if int8 is None:
        return NotExported(search["reason"]), {"skipped": search["reason"], "search": search}
    int8, temperature = calibrate_onnx(int8, splits["val"], threads=export.threads)
    test = splits["test"]
    fp32_logits = OnnxRunner(pruned_onnx, CPU, export.threads).logits(test.images.numpy())
    int8_logits = OnnxRunner(int8, CPU, export.threads).logits(test.images.numpy())
    assessment = assess_int8(fp32_logits, int8_logits, test.labels.numpy(),
                             export.max_int8_drop)
    if not search["pays"]:  # accurate or not, an int8 model that is not faster is not shipped
        assessment.update(recommended=False, reason=f"{search['reason']} "
                                                    f"(test: {assessment['reason']})")
    return int8, {**_summary(int8), "quantization": int8.sidecar["quantization"], **assessment,
                  "calibration": temperature, "search": search}


def int8_search_settings(export: ExportParams) -> dict[str, Any]:
    return {"configs": export.int8_configs, "histogram_images": export.histogram_calibration_images,
            "max_drop": export.max_int8_drop, "threads": export.threads,
            "batch": export.throughput_batch,
            **timing_settings(export)}


def write_export_report(finetuned_check: dict, pruned_check: dict, int8_check: dict,
                        export: ExportParams) -> dict[str, Any]:
    int8 = None if "skipped" in int8_check else int8_check
    int8_check = dict(int8_check)  # the search goes to the report's top level, not per model
    search = int8_check.pop("search", None) or {}
    return {
        "models": {"finetuned_onnx": finetuned_check, "pruned_onnx": pruned_check,
                   "pruned_int8": int8_check},
        "recommendation": recommend(int8),
        "int8_trials": search.get("trials", []),
        "int8_search": {k: v for k, v in search.items() if k != "trials"},
        "settings": export.model_dump(),
        "runtime": {"onnxruntime": ort.__version__,
                    "providers": list(pruned_check["verification"]["providers"]),
                    "threads": session_options(export.threads).intra_op_num_threads},
    }
