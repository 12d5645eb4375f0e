"""PyTorch classifier -> ONNX (opset >= 17, dynamic batch axis), checked by the onnx checker.

Exporter: ``torch.onnx.export(..., dynamo=False)``, the TorchScript-based exporter. Both
exporters of torch 2.14 export the timm EfficientNet-Lite0 and its pruned variants to the same
graph (49 Conv with BatchNorm folded, 33 Clip, 9 Add) and agree with PyTorch to ~2e-6; the
TorchScript one takes 0.5 s per model where the torch.export-based one (``dynamo=True``) takes
8-9 s on 2 CPU cores and needs onnxscript, which would eat the time budget of the default run.
torch marks the TorchScript exporter deprecated but ships it in every version this package
allows (``torch<=2.14.1``); switching is the ``dynamo`` argument of ``_torch_export`` alone.
"""

from __future__ import annotations

import inspect
import io
import logging
import warnings
from typing import Any

import onnx
import torch
from torch import nn

from ft_pipelines.core.export.artifact import (
    INPUT_NAME,
    OUTPUT_NAME,
    OnnxModel,
    build_sidecar,
    sha256_hex,
)
from ft_pipelines.core.models.artifact import model_to_bytes
from ft_pipelines.core.utils import count_macs_params

logger = logging.getLogger(__name__)

MIN_OPSET = 17


def _torch_export(model: nn.Module, example: torch.Tensor, opset: int) -> bytes:
    buffer = io.BytesIO()
    # torch < 2.5 has no ``dynamo`` argument: there the TorchScript exporter is the only one
    arguments = inspect.signature(torch.onnx.export).parameters
    choice = {"dynamo": False} if "dynamo" in arguments else {}
    with warnings.catch_warnings():
        # the deprecation notice of the TorchScript exporter: chosen on purpose (module docstring)
        warnings.filterwarnings("ignore", message=".*legacy TorchScript-based ONNX export.*")
        torch.onnx.export(
            model, (example,), buffer, **choice, opset_version=opset,
            input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
            dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
            do_constant_folding=True,
        )
    return buffer.getvalue()


def _check_graph(model_bytes: bytes, num_classes: int) -> None:
    proto = onnx.load_from_string(model_bytes)
    onnx.checker.check_model(proto, full_check=True)
    inputs = [i.name for i in proto.graph.input]
    outputs = [o.name for o in proto.graph.output]
    if inputs != [INPUT_NAME] or outputs != [OUTPUT_NAME]:
        raise ValueError(f"Exported graph has inputs {inputs} and outputs {outputs}; expected "
                         f"[{INPUT_NAME!r}] and [{OUTPUT_NAME!r}]")
    dims = proto.graph.output[0].type.tensor_type.shape.dim
    if len(dims) != 2 or dims[1].dim_value != num_classes or not dims[0].dim_param:
        raise ValueError(f"Exported output shape {[d.dim_param or d.dim_value for d in dims]} is "
                         f"not [batch, {num_classes}]")


def export_onnx(model: nn.Module, class_names: list[str], input_size: int,
                mean: list[float], std: list[float], *, opset: int = MIN_OPSET,
                source: dict[str, Any] | None = None) -> OnnxModel:
    """Export ``model`` (eval mode, CPU) with input ``input`` [batch, 3, size, size] float32
    normalised and output ``logits`` [batch, classes]; ``source`` goes into the sidecar."""
    if int(opset) < MIN_OPSET:
        raise ValueError(f"export.opset={opset}: use {MIN_OPSET} or newer")
    device = next(iter(model.parameters())).device
    example = torch.zeros(2, 3, int(input_size), int(input_size), device=device)
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            classes = model(example).shape[1]
        if classes != len(class_names):
            raise ValueError(f"The model has {classes} outputs but class_names has "
                             f"{len(class_names)}: export the model with the classes it was "
                             "trained on")
        model_bytes = _torch_export(model, example, int(opset))
    finally:
        model.train(was_training)
    _check_graph(model_bytes, len(class_names))
    exporter = f"torch.onnx TorchScript exporter, torch {torch.__version__}"
    sidecar = build_sidecar(model_bytes, class_names, input_size, mean, std, int(opset), source,
                            exporter)
    logger.info("Exported %s to ONNX opset %d: %.2f MB, sha256 %s", type(model).__name__, opset,
                len(model_bytes) / 1e6, sidecar["sha256"][:12])
    return OnnxModel(model_bytes, sidecar)


def describe_source(model: nn.Module) -> dict[str, Any]:
    """Where an ft_pipelines model came from, for the sidecar.

    ``sha256`` is that of the model serialised as its safetensors artifact: the same bytes
    ``ModelArtifactDataset`` stores, so it identifies the stored artifact file. ``artifact``
    (path and version) is what the dataset recorded when it loaded the model, kept only while
    the model still hashes to that file: a modified or copied-and-pruned model drops it.
    """
    cfg = model.backbone_cfg
    size = int(cfg.input_size)
    fingerprint = sha256_hex(model_to_bytes(model))
    loaded = dict(getattr(model, "artifact_source", None) or {})
    macs, params = count_macs_params(model, torch.zeros(1, 3, size, size))
    return {
        "architecture": cfg.architecture, "library": cfg.library, "backbone_source": cfg.source,
        "sha256": fingerprint,
        "artifact": loaded if loaded.get("sha256") == fingerprint else None,
        "params": params, "macs": macs,
    }


def export_classifier(model: nn.Module, class_names: list[str], opset: int = MIN_OPSET
                      ) -> OnnxModel:
    """``export_onnx`` for a model built by this package: preprocessing from ``backbone_cfg``."""
    cfg = model.backbone_cfg
    return export_onnx(model.cpu(), class_names, cfg.input_size, list(cfg.mean), list(cfg.std),
                       opset=opset, source=describe_source(model))
