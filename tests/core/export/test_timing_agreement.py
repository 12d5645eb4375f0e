"""The export's int8 verdict and the evaluation's rows are timed the same way: one timer
(``compare_timings``), one protocol (rounds, batch-1 calls, warm-up, batch) and one session
configuration. On the quiet default run the two disagreed (int8 1.43x fp32's throughput in the
export, 0.83x in the evaluation) while timing with different protocols (docs/performance.md)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ft_pipelines.core.evaluation import timing_settings
from ft_pipelines.core.evaluation.settings import TimingParams
from ft_pipelines.core.export.evaluate import evaluate_onnx, timing_protocol
from ft_pipelines.core.export.int8_search import search_int8
from ft_pipelines.core.export.runtime import session_options
from ft_pipelines.params import validate_parameters
from tests.core.export.conftest import CLASSES, tiny_images
from tests.params.test_conf import load_parameters
from tests.project_copy import copy_project


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return copy_project(tmp_path_factory.mktemp("project"))


def _options(threads: int | None) -> dict:
    options = session_options(threads)
    return {"intra": options.intra_op_num_threads, "inter": options.inter_op_num_threads,
            "mode": options.execution_mode, "level": options.graph_optimization_level}


@pytest.mark.parametrize("env", ["local", "ci"])
def test_the_export_and_the_evaluation_time_with_one_protocol(project, env):
    """conf/base (local is empty in the copy) and conf/ci: the export's int8 trials and the
    evaluation's rows get the same rounds, calls, warm-up, batch and session options."""
    params = validate_parameters(load_parameters(project, env))
    assert timing_settings(params.export) == timing_settings(params.evaluation)
    assert params.export.throughput_batch == params.evaluation.throughput_batch
    # the evaluation's sessions take PyTorch's thread count (runtime.threads, set by the hook)
    assert _options(params.export.threads) == _options(None)


def test_both_paths_record_the_protocol_they_timed_with(tiny_onnx, tiny_data):
    """The same TimingParams through the export's search (as its node passes them) and through
    the evaluation's scoring: the recorded protocols are equal, so a report can refuse to put
    side by side two figures that were not timed alike."""
    timing = TimingParams(timing_rounds=5, latency_runs=10, latency_warmup=1,
                          throughput_batch=8)
    settings = {"histogram_images": 8, "max_drop": 100.0, "threads": 1,
                "batch": timing.throughput_batch, "configs": ["qdq_u8s8_channel_minmax"],
                **timing_settings(timing)}
    val, test = tiny_images(16, seed=1), tiny_images(16, seed=2)
    _, search = search_int8(tiny_onnx, tiny_data.images.numpy(), val, test, settings)
    scores = evaluate_onnx(tiny_onnx, test, CLASSES, timing, threads=1)
    assert timing_protocol(search["fp32"]) == timing_protocol(scores) == {
        "timing_rounds": 5, "timing_runs": 2, "timing_warmup": 1, "throughput_batch": 8,
        "threads": 1}
