"""The interleaved timer: models alternate within rounds, medians, spread and ratios."""

from __future__ import annotations

import threading
import time

import pytest

from ft_pipelines.core.evaluation import cost
from ft_pipelines.core.evaluation.cost import (
    TimedModel,
    compare_timings,
    interleaved_rounds,
    round_order,
    wait_for_quiet_threads,
)


def _sleeper(name: str, seconds: float, log: list[str]) -> TimedModel:
    def call() -> None:
        log.append(name)
        time.sleep(seconds)

    return TimedModel(call, call)


def test_a_slow_model_is_slower_in_every_round_and_the_order_alternates():
    log: list[str] = []
    models = {"fast": _sleeper("fast", 0.0005, log), "slow": _sleeper("slow", 0.02, log)}
    timed = interleaved_rounds(models, rounds=6, runs=2, warmup=0)
    assert all(s > f for s, f in zip(timed["latency"]["slow"], timed["latency"]["fast"],
                                     strict=True))
    assert all(s > f for s, f in zip(timed["batch"]["slow"], timed["batch"]["fast"],
                                     strict=True))
    assert timed["orders"] == [["fast", "slow"], ["slow", "fast"]] * 3
    # the calls themselves ran in that order: 2 batch-1 calls and 1 batch call per model
    first_of_round = [log[i] for i in range(0, len(log), 6)]
    assert first_of_round == ["fast", "slow"] * 3


def test_rotation_puts_every_model_in_every_position():
    orders = [round_order(["a", "b", "c"], r) for r in range(3)]
    assert orders == [["a", "b", "c"], ["b", "c", "a"], ["c", "a", "b"]]
    for position in range(3):
        assert {order[position] for order in orders} == {"a", "b", "c"}


def test_summary_has_medians_spread_and_within_round_ratios():
    models = {"ref": _sleeper("ref", 0.001, []), "slow": _sleeper("slow", 0.01, [])}
    rows = compare_timings(models, batch=8, rounds=5, runs=2, warmup=1, reference="ref")
    slow, ref = rows["slow"], rows["ref"]
    assert slow["latency_ms"] > ref["latency_ms"] >= 1.0
    assert slow["latency_ratio"] > 3 and slow["throughput_ratio"] < 1 / 3
    assert ref["latency_ratio"] == 1.0 and ref["throughput_ratio"] == 1.0
    assert len(slow["latency_rounds_ms"]) == 5 and slow["latency_spread_ms"] >= 0
    assert slow["throughput"] == pytest.approx(8 * 1000 / 10.0, rel=0.5)


def test_fewer_than_five_rounds_is_refused():
    with pytest.raises(ValueError, match="rounds >= 5"):
        compare_timings({"a": _sleeper("a", 0, [])}, batch=1, rounds=3)
    with pytest.raises(ValueError, match="reference"):
        compare_timings({"a": _sleeper("a", 0, [])}, batch=1, reference="b")


def _burn(seconds: float) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        sum(range(1000))


def test_the_timer_waits_for_a_spinning_worker_thread_to_stop():
    """A thread left busy after a call (as onnxruntime's workers spin for ~40 ms) is waited for;
    with no such thread the wait is one short window."""
    burner = threading.Thread(target=_burn, args=(0.12,))
    burner.start()
    waited = wait_for_quiet_threads(max_s=1.0)
    assert not burner.is_alive() or waited >= 0.99
    assert waited >= 0.1
    burner.join()
    assert wait_for_quiet_threads(max_s=1.0) < 0.1


def test_every_model_of_a_round_is_timed_after_the_wait(monkeypatch):
    log: list[str] = []
    monkeypatch.setattr(cost, "wait_for_quiet_threads", lambda: log.append("quiet") or 0.0)
    models = {"a": _sleeper("a", 0.0, log), "b": _sleeper("b", 0.0, log)}
    interleaved_rounds(models, rounds=5, runs=1, warmup=0)
    # per round and model: the wait, one batch-1 call, one batch call
    assert log == [item for order in [["a", "b"], ["b", "a"]] * 2 + [["a", "b"]]
                     for name in order for item in ("quiet", name, name)]
