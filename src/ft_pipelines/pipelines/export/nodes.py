"""Thin nodes: export to ONNX and check it against PyTorch, quantise to int8, report.

A model whose ONNX export disagrees with PyTorch makes its node raise, so nothing is saved.
"""

from __future__ import annotations

from typing import Any

import onnxruntime as ort
import pandas as pd
from torch import nn

from ft_pipelines.core.data import split_image_data, stratified_subset
from ft_pipelines.core.export import (
    CPU,
    NotExported,
    OnnxModel,
    OnnxRunner,
    assess_int8,
    calibrate_onnx,
    export_classifier,
    quantize_int8,
    recommend,
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
    """int8 of the pruned model, calibrated on training images, judged against its fp32 self
    on the test split."""
    if export.quantize is None:
        return NotExported("export.quantize is null"), {"skipped": "export.quantize is null"}
    splits = split_image_data(images, pruned_onnx.input_size, decode_cache_dir)
    calibration = stratified_subset(splits["train"], export.calibration_images, export.seed)
    int8 = quantize_int8(pruned_onnx, calibration.images.numpy())
    int8, temperature = calibrate_onnx(int8, splits["val"], threads=export.threads)
    test = splits["test"]
    fp32_logits = OnnxRunner(pruned_onnx, CPU, export.threads).logits(test.images.numpy())
    int8_logits = OnnxRunner(int8, CPU, export.threads).logits(test.images.numpy())
    assessment = assess_int8(fp32_logits, int8_logits, test.labels.numpy(),
                             export.max_int8_drop)
    return int8, {**_summary(int8), "quantization": int8.sidecar["quantization"], **assessment,
                  "calibration": temperature}


def write_export_report(finetuned_check: dict, pruned_check: dict, int8_check: dict,
                        export: ExportParams) -> dict[str, Any]:
    int8 = None if "skipped" in int8_check else int8_check
    return {
        "models": {"finetuned_onnx": finetuned_check, "pruned_onnx": pruned_check,
                   "pruned_int8": int8_check},
        "recommendation": recommend(int8),
        "settings": export.model_dump(),
        "runtime": {"onnxruntime": ort.__version__,
                    "providers": list(pruned_check["verification"]["providers"]),
                    "threads": session_options(export.threads).intra_op_num_threads},
    }
