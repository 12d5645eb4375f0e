"""An exported model scored like the PyTorch ones (core.evaluation): the same accuracy and
calibration metrics, plus size, latency at batch 1 and throughput at a larger batch, timed
with onnxruntime on the same number of threads as PyTorch."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import onnxruntime as ort

from ft_pipelines.core.data import ImageData
from ft_pipelines.core.evaluation.calibration import calibrated_scores, fit_calibration
from ft_pipelines.core.evaluation.cost import TimedModel, compare_timings, timing_settings
from ft_pipelines.core.evaluation.settings import TimingParams
from ft_pipelines.core.export.artifact import OnnxModel
from ft_pipelines.core.export.runtime import CPU, OnnxRunner

logger = logging.getLogger(__name__)


def _random_batch(runner: OnnxRunner, batch_size: int) -> np.ndarray:
    size = runner.model.input_size
    return np.random.default_rng(0).standard_normal((batch_size, 3, size, size),
                                                    dtype=np.float32)


#: what makes two onnxruntime timings comparable: the interleaved timer's protocol and the
#: session's threads (the session options are ``runtime.session_options``' for every stage)
PROTOCOL_KEYS = ("timing_rounds", "timing_runs", "timing_warmup", "throughput_batch", "threads")


def timing_protocol(row: dict[str, Any]) -> dict[str, Any]:
    """The protocol a timed row was measured with (``PROTOCOL_KEYS``): the export's int8
    verdict and the evaluation's rows must show the same one to be compared."""
    return {key: row.get(key) for key in PROTOCOL_KEYS}


def session_threads(runner: OnnxRunner) -> int:
    return int(runner.session.get_session_options().intra_op_num_threads)


def onnx_timed_model(runner: OnnxRunner, batch: int) -> TimedModel:
    """What the interleaved timer (``compare_timings``) runs for an onnxruntime session."""
    one, many = _random_batch(runner, 1), _random_batch(runner, batch)
    return TimedModel(lambda: runner.run(one), lambda: runner.run(many))


def onnx_static_cost(runner: OnnxRunner) -> dict[str, Any]:
    """Size of the file, parameters and MACs of its source model, the runtime and threads."""
    source = runner.model.sidecar.get("source_model") or {}
    return {"params": source.get("params"), "macs": source.get("macs"),
            "size_bytes": len(runner.model.model_bytes),
            "runtime": f"onnxruntime {ort.__version__} {runner.provider}",
            "threads": session_threads(runner)}


def onnx_cost_metrics(runner: OnnxRunner, timing: TimingParams) -> dict[str, Any]:
    """Size, parameters and MACs (of the source model), latency and throughput, timed as the
    PyTorch path times (``timing``: the ``evaluation.*`` timing keys)."""
    batch = timing.throughput_batch
    timings = compare_timings({"model": onnx_timed_model(runner, batch)}, batch,
                              **timing_settings(timing))["model"]
    return {**onnx_static_cost(runner), **timings}


def score_onnx(model: OnnxModel, data: ImageData, class_names: list[str], batch: int,
               *, provider: str = CPU, threads: int | None = None
               ) -> tuple[dict[str, Any], TimedModel]:
    """Accuracy and calibration of an exported model on ``data`` and its static cost, with the
    ``TimedModel`` that times it at batch 1 and ``batch`` (interleaved with others by the
    caller).

    ``threads`` defaults to PyTorch's current thread count, so rows are comparable.
    """
    if list(class_names) != model.class_names:
        raise ValueError(f"The exported model's classes {model.class_names} differ from "
                         f"class_names {list(class_names)}: evaluate it on the data it was "
                         "trained for")
    runner = OnnxRunner(model, provider, threads)
    # the temperature the export fitted on the validation split (1.0 in older sidecars)
    scores = calibrated_scores(runner.logits(data.images.numpy()), data.labels.numpy(),
                               list(class_names), model.temperature)
    scores.update(onnx_static_cost(runner))
    scores["sha256"] = model.sha256  # which file: predict checks the report is about it
    return scores, onnx_timed_model(runner, batch)


def evaluate_onnx(model: OnnxModel, data: ImageData, class_names: list[str],
                  timing: TimingParams | dict[str, Any], *, provider: str = CPU,
                  threads: int | None = None) -> dict[str, Any]:
    """The metrics dict of ``core.evaluation.evaluate_models`` for one exported model, timed
    alone (several models: ``score_onnx`` and time them together)."""
    timing = TimingParams.model_validate(timing) if isinstance(timing, dict) else timing
    batch = timing.throughput_batch
    scores, timed = score_onnx(model, data, class_names, batch, provider=provider,
                               threads=threads)
    scores.update(compare_timings({"model": timed}, batch, **timing_settings(timing))["model"])
    logger.info("ONNX %s (%s): top-1 %.4f, %.2f ms at batch 1", model.precision, provider,
                scores["top1"], scores["latency_ms"])
    return scores


def calibrate_onnx(model: OnnxModel, val: ImageData, *, threads: int | None = None
                   ) -> tuple[OnnxModel, dict[str, Any]]:
    """Fit the temperature of ``model`` on the validation split (``fit_calibration``) and store
    it in the sidecar (the ONNX bytes are unchanged); returns the model and the fit's NLL and
    ECE before/after on that split. No validation images: T = 1.0, said in the summary."""
    if len(val) == 0:
        return model.with_graph(model.model_bytes, temperature=1.0), {
            "temperature": 1.0, "skipped": "no validation images to fit a temperature on"}
    logits = OnnxRunner(model, CPU, threads).logits(val.images.numpy())
    fitted = fit_calibration(logits, val.labels.numpy())
    if fitted["not_applied"]:
        logger.info("%s: temperature 1 kept: %s", model.precision, fitted["not_applied"])
    else:
        logger.info("%s: temperature %.3f, validation ECE %.4f -> %.4f", model.precision,
                    fitted["temperature"], fitted["ece_uncalibrated"], fitted["ece"])
    return model.with_graph(model.model_bytes, temperature=fitted["temperature"]), fitted
