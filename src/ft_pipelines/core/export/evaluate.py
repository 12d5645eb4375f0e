"""An exported model scored like the PyTorch ones (core.evaluation): the same accuracy and
calibration metrics, plus size, latency at batch 1 and throughput at a larger batch, timed
with onnxruntime on the same number of threads as PyTorch."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import onnxruntime as ort

from ft_pipelines.core.data import ImageData
from ft_pipelines.core.evaluation import classification_metrics, timed_calls_ms, timing_summary
from ft_pipelines.core.export.artifact import OnnxModel
from ft_pipelines.core.export.runtime import CPU, OnnxRunner, softmax

logger = logging.getLogger(__name__)


def _random_batch(runner: OnnxRunner, batch_size: int) -> np.ndarray:
    size = runner.model.input_size
    return np.random.default_rng(0).standard_normal((batch_size, 3, size, size),
                                                    dtype=np.float32)


def onnx_cost_metrics(runner: OnnxRunner, params: dict[str, Any]) -> dict[str, Any]:
    """Size, parameters and MACs (of the source model), latency and throughput.

    ``params`` are the ``evaluation.*`` keys the PyTorch path reads: ``latency_warmup``,
    ``latency_runs``, ``throughput_batch``.
    """
    if int(params.get("latency_runs", 50)) < 1:
        raise ValueError("evaluation.latency_runs must be >= 1")
    one = _random_batch(runner, 1)
    latency = timed_calls_ms(lambda: runner.run(one), int(params.get("latency_warmup", 10)),
                             int(params.get("latency_runs", 50)))
    batch = int(params.get("throughput_batch", 64))
    many = _random_batch(runner, batch)
    throughput_ms = timed_calls_ms(lambda: runner.run(many), 2, 5)  # as measure_throughput
    source = runner.model.sidecar.get("source_model") or {}
    options = runner.session.get_session_options()
    return {
        "params": source.get("params"), "macs": source.get("macs"),
        "size_bytes": len(runner.model.model_bytes),
        **timing_summary(latency, throughput_ms, batch),
        "runtime": f"onnxruntime {ort.__version__} {runner.provider}",
        "threads": int(options.intra_op_num_threads),
    }


def evaluate_onnx(model: OnnxModel, data: ImageData, class_names: list[str],
                  params: dict[str, Any], *, provider: str = CPU,
                  threads: int | None = None) -> dict[str, Any]:
    """The metrics dict of ``core.evaluation.evaluate_models`` for one exported model.

    ``threads`` defaults to PyTorch's current thread count, so rows are comparable.
    """
    if list(class_names) != model.class_names:
        raise ValueError(f"The exported model's classes {model.class_names} differ from "
                         f"class_names {list(class_names)}: evaluate it on the data it was "
                         "trained for")
    runner = OnnxRunner(model, provider, threads)
    probs = softmax(runner.logits(data.images.numpy()))
    scores = classification_metrics(probs, data.labels.numpy(), list(class_names))
    scores.update(onnx_cost_metrics(runner, params))
    scores["sha256"] = model.sha256  # which file: predict checks the report is about it
    logger.info("ONNX %s (%s): top-1 %.4f, %.2f ms at batch 1", model.precision, provider,
                scores["top1"], scores["latency_ms"])
    return scores
