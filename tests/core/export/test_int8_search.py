"""The int8 search: every configuration is a row with its timings and top-1, the kept one is
the fastest within the budget, and an int8 model that is not faster is not shipped."""

from __future__ import annotations

import typing

import pytest

from ft_pipelines.core.export.int8_search import _choose, search_int8
from ft_pipelines.core.export.quantize import (
    INT8_CONFIGS,
    nodes_kept_fp32,
    prepare_for_quantization,
)
from ft_pipelines.params.export import Int8ConfigName
from tests.core.export.conftest import tiny_images

SETTINGS = {"histogram_images": 16, "max_drop": 100.0, "threads": 1, "batch": 8,
            "rounds": 5, "runs": 2, "warmup": 1}


def test_every_configuration_is_a_row_and_one_is_kept(tiny_onnx, tiny_data):
    configs = ["qdq_u8s8_channel_minmax", "qop_u8s8_channel_minmax",
               "qdq_u8s8_channel_percentile"]
    val, test = tiny_images(24, seed=1), tiny_images(24, seed=2)
    int8, search = search_int8(tiny_onnx, tiny_data.images.numpy(), val, test,
                               {**SETTINGS, "configs": configs})
    rows = search["trials"]
    assert [r["config"] for r in rows] == configs
    for row in rows:
        assert {"latency_ms", "throughput", "top1", "val_top1", "chosen", "format",
                "per_channel", "activations", "calibration_method"} <= set(row)
        assert row["latency_ms"] > 0 and row["throughput"] > 0
    assert rows[2]["calibration_images"] == 16  # the histogram method on fewer images
    assert sum(r["chosen"] for r in rows) == 1
    assert int8.sidecar["quantization"]["config"] == search["kept"]
    assert search["fp32"]["latency_ratio"] == 1.0
    with pytest.raises(ValueError, match="export.int8_configs"):
        search_int8(tiny_onnx, tiny_data.images.numpy(), val, test,
                    {**SETTINGS, "configs": ["fp16"]})


def _row(name, latency_ratio, throughput_ratio, within=True):
    return {"config": name, "latency_ratio": latency_ratio, "throughput_ratio": throughput_ratio,
            "within_budget": within, "val_top1": 0.9, "chosen": False,
            "faster": latency_ratio < 1 and throughput_ratio > 1}


def test_the_fastest_within_budget_is_kept_and_a_slower_int8_ships_fp32():
    rows = [_row("a", 0.9, 1.2), _row("b", 0.5, 2.5, within=False), _row("c", 0.7, 1.9)]
    summary = _choose(rows, 1.0, 64)
    assert summary["chosen"] == "c" and summary["pays"] and summary["meets_target"]
    assert [r["chosen"] for r in rows] == [False, False, True]
    slower = [_row("a", 1.1, 0.9), _row("b", 1.3, 0.8)]
    summary = _choose(slower, 1.0, 64)
    assert summary["chosen"] == "a" and not summary["pays"]
    assert "no int8 configuration is faster than fp32" in summary["reason"]
    assert "ship fp32" in summary["reason"]


def test_layers_kept_fp32_are_found_in_the_graph(tiny_onnx):
    prepared = prepare_for_quantization(tiny_onnx)
    first_last = nodes_kept_fp32(prepared, ("first", "last"))
    depthwise = nodes_kept_fp32(prepared, ("depthwise",))
    assert len(first_last) == 2 and first_last[1].endswith("Gemm")
    assert len(depthwise) == 1 and depthwise[0] not in first_last  # the grouped 3x3 conv
    with pytest.raises(ValueError, match="keep_fp32"):
        nodes_kept_fp32(prepared, ("middle",))


def test_the_parameter_names_the_configurations_of_the_grid():
    assert list(typing.get_args(Int8ConfigName)) == list(INT8_CONFIGS)


def _fake_timings(ratios_per_call):
    """compare_timings stand-in: call i gives every model the (latency, throughput) ratios of
    ``ratios_per_call[i]`` (a dict by name; fp32 is 1, 1)."""
    calls = []

    def fake(models, batch, **kwargs):
        ratios = ratios_per_call[len(calls)]
        calls.append(list(models))
        return {name: {"latency_ms": ratios.get(name, (1.0, 1.0))[0],
                       "latency_spread_ms": 0.0,
                       "throughput": 100.0 * ratios.get(name, (1.0, 1.0))[1],
                       "throughput_spread": 0.0,
                       "latency_ratio": ratios.get(name, (1.0, 1.0))[0],
                       "throughput_ratio": ratios.get(name, (1.0, 1.0))[1]} for name in models}

    return fake, calls


@pytest.mark.parametrize(("confirmed", "pays", "meets"), [((0.7, 1.9), True, True),
                                                           ((0.9, 1.2), True, False),
                                                           ((1.1, 0.9), False, False)])
def test_the_kept_configuration_is_timed_again_and_that_decides(
        tiny_onnx, tiny_data, monkeypatch, confirmed, pays, meets):
    """The fastest of several noisy trials looks faster than it is (winner's curse): the
    verdict comes from a fresh timing of the kept one against fp32 alone."""
    import ft_pipelines.core.export.int8_search as module

    configs = ["qdq_u8s8_channel_minmax", "qdq_u8s8_tensor_minmax"]
    fake, calls = _fake_timings([{configs[0]: (0.6, 1.5), configs[1]: (0.5, 2.5)},
                                 {configs[1]: confirmed}])
    monkeypatch.setattr(module, "compare_timings", fake)
    val, test = tiny_images(24, seed=1), tiny_images(24, seed=2)
    _, search = search_int8(tiny_onnx, tiny_data.images.numpy(), val, test,
                            {**SETTINGS, "configs": configs})
    assert calls == [["fp32", *configs], ["fp32", configs[1]]]  # the kept one, alone with fp32
    kept = next(r for r in search["trials"] if r["chosen"])
    assert kept["config"] == configs[1] == search["chosen"]
    assert (kept["latency_ratio"], kept["throughput_ratio"]) == confirmed
    assert (kept["selection_latency_ratio"], kept["selection_throughput_ratio"]) == (0.5, 2.5)
    assert search["selection"] == {"latency_ratio": 0.5, "throughput_ratio": 2.5}
    assert (search["pays"], search["meets_target"]) == (pays, meets)
    assert "confirmed" in search["reason"]
    assert ("ship fp32" in search["reason"]) is not pays
