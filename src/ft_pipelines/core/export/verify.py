"""Does the ONNX graph compute what the PyTorch model computes? Top-1 agreement and the largest
logit difference on real images, with every available onnxruntime provider."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from ft_pipelines.core.data import ImageData
from ft_pipelines.core.export.artifact import OnnxModel
from ft_pipelines.core.export.runtime import OnnxRunner, execution_providers
from ft_pipelines.core.utils import normalise

logger = logging.getLogger(__name__)


class ExportMismatchError(ValueError):
    """The exported graph disagrees with its PyTorch model on more images than allowed."""


@torch.inference_mode()
def torch_logits(model: nn.Module, images_uint8: torch.Tensor, mean: Sequence[float],
                 std: Sequence[float], batch_size: int = 64) -> np.ndarray:
    """PyTorch logits [N, K] on CPU, normalised batch by batch exactly as in training."""
    was_training = model.training
    model.eval()
    try:
        chunks = [model(normalise(images_uint8[start:start + batch_size], mean, std)).float()
                  for start in range(0, len(images_uint8), batch_size)]
    finally:
        model.train(was_training)
    return torch.cat(chunks).cpu().numpy()


def compare_logits(reference: np.ndarray, candidate: np.ndarray) -> dict[str, Any]:
    """Top-1 agreement of two logit arrays [N, K] and their largest absolute difference."""
    if reference.shape != candidate.shape:
        raise ValueError(f"Logit shapes differ: {reference.shape} vs {candidate.shape}")
    differs = reference.argmax(axis=1) != candidate.argmax(axis=1)
    return {"n_images": int(len(reference)), "disagreements": int(differs.sum()),
            "top1_agreement": float(1.0 - differs.mean()),
            "max_abs_logit_diff": float(np.abs(reference - candidate).max())}


def top1(logits: np.ndarray, labels: np.ndarray) -> float:
    return float((logits.argmax(axis=1) == np.asarray(labels)).mean())


def verify_export(model: nn.Module, exported: OnnxModel, data: ImageData,
                  max_disagreement: float, *, name: str = "model", threads: int | None = None,
                  providers: Sequence[str] | None = None) -> dict[str, Any]:
    """Compare ``exported`` with ``model`` on ``data`` with each provider; raise
    ``ExportMismatchError`` when the share of images whose top-1 differs exceeds
    ``max_disagreement``. Returns the numbers per provider and both test top-1."""
    if not 0 <= max_disagreement < 1:
        raise ValueError(f"export.max_disagreement={max_disagreement}: give a fraction in [0, 1)")
    reference = torch_logits(model.cpu(), data.images, exported.mean, exported.std)
    labels = data.labels.numpy()
    result: dict[str, Any] = {"n_images": len(data), "torch_top1": top1(reference, labels),
                              "max_disagreement": float(max_disagreement), "providers": {}}
    for provider in providers or execution_providers():
        logits = OnnxRunner(exported, provider, threads).logits(data.images.numpy())
        check = compare_logits(reference, logits)
        check["onnx_top1"] = top1(logits, labels)
        check["passed"] = check["disagreements"] <= max_disagreement * check["n_images"]
        result["providers"][provider] = check
        logger.info("%s ONNX vs PyTorch (%s): top-1 agreement %.4f, max |logit diff| %.2e",
                    name, provider, check["top1_agreement"], check["max_abs_logit_diff"])
        if not check["passed"]:
            raise ExportMismatchError(
                f"The ONNX export of {name} disagrees with PyTorch on {check['disagreements']} "
                f"of {check['n_images']} test images ({1 - check['top1_agreement']:.2%} > "
                f"export.max_disagreement={max_disagreement:.2%}) with {provider}; max |logit "
                f"difference| {check['max_abs_logit_diff']:.3g}. The exported graph does not "
                "compute what the model computes, so it is not shipped. Check for layers "
                "that export differently (custom ops, train-mode behaviour), or raise "
                "export.max_disagreement if the difference is understood."
            )
    result["onnx_top1"] = next(iter(result["providers"].values()))["onnx_top1"]
    return result
