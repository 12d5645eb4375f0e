"""Running an exported classifier with onnxruntime: sessions, normalisation, batched logits."""

from __future__ import annotations

import logging

import numpy as np
import onnxruntime as ort
import torch

from ft_pipelines.core.export.artifact import INPUT_NAME, OnnxModel

# numpy only, shared with the served MLflow model (which has no torch)
from ft_pipelines.serving import image_classifier

logger = logging.getLogger(__name__)

softmax = image_classifier.softmax  # evaluation and predict import it from here
CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"


def execution_providers() -> list[str]:
    """The providers to check an export on: CUDA when this onnxruntime build has it, and CPU."""
    available = ort.get_available_providers()
    return [p for p in (CUDA, CPU) if p in available]


def session_options(threads: int | None = None) -> ort.SessionOptions:
    """Full graph optimisation on ``threads`` intra-op threads (default: PyTorch's count, so the
    two runtimes are compared on the same threads) and one inter-op thread."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = int(threads or torch.get_num_threads())
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3  # errors only: ORT's warnings go to stderr, not to logging
    return options


class OnnxRunner:
    """An onnxruntime session for one exported classifier, fed with uint8 NCHW images."""

    def __init__(self, model: OnnxModel, provider: str = CPU, threads: int | None = None) -> None:
        if provider not in ort.get_available_providers():
            raise ValueError(f"onnxruntime provider {provider!r} is not available here; "
                             f"available: {ort.get_available_providers()}")
        providers = [provider] if provider == CPU else [provider, CPU]
        self.model = model
        self.provider = provider
        self.session = ort.InferenceSession(model.model_bytes, session_options(threads),
                                            providers=providers)

    def normalise(self, images_uint8: np.ndarray) -> np.ndarray:
        """uint8 [N, 3, H, W] -> the float32 input the graph expects (as in training)."""
        return image_classifier.normalise(images_uint8, self.model.mean, self.model.std)

    def run(self, batch: np.ndarray) -> np.ndarray:
        """Logits of an already normalised float32 batch."""
        return self.session.run(None, {INPUT_NAME: batch})[0]

    def logits(self, images_uint8: np.ndarray | torch.Tensor, batch_size: int = 64
               ) -> np.ndarray:
        """Logits [N, K] of uint8 images [N, 3, H, W], normalised batch by batch."""
        images = np.asarray(images_uint8)
        if images.dtype != np.uint8 or images.ndim != 4:
            raise ValueError(f"OnnxRunner.logits expects uint8 images [N, 3, H, W]; got "
                             f"{images.dtype} {images.shape}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        size = self.model.input_size
        if images.shape[1:] != (3, size, size):
            raise ValueError(f"Images are {images.shape[1:]} but the model takes "
                             f"(3, {size}, {size}): decode them at input_size={size}")
        chunks = [self.run(self.normalise(images[start:start + batch_size]))
                  for start in range(0, len(images), batch_size)]
        if not chunks:
            raise ValueError("OnnxRunner.logits got zero images")
        return np.concatenate(chunks)
