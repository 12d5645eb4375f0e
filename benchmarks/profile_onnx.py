"""Where a pruned export's onnxruntime time goes, and what ``pruning.round_to`` does to it.

    OMP_NUM_THREADS=1 nice python benchmarks/profile_onnx.py --ratio 0.81 --round-to 8 16 \
        --threads 1

The bundled EfficientNet-Lite0 (96 px, a 10-class head) is pruned by L1 filter scores to remove
``--ratio`` of its MACs once per ``--round-to`` value (the pruning stage's own function and
guards; timing does not depend on the weights' accuracy). Each export is profiled with
onnxruntime's profiler (``--batch`` 1 and 64): per kind of node (pointwise, depthwise, other
convolutions, the rest) the median kernel time per call, MACs and GMAC/s, and the share of a
call spent outside kernels. Then all exports are timed against the unpruned one with the
project's interleaved timer (``compare_timings``; ratios within a round).
"""

from __future__ import annotations

import argparse
import collections
import copy
import json
import logging
import math
import statistics
import tempfile

import numpy as np
import torch

from ft_pipelines.core.evaluation import compare_timings
from ft_pipelines.core.export import OnnxRunner, export_classifier, onnx_timed_model
from ft_pipelines.core.export.runtime import CPU, session_options
from ft_pipelines.core.models import load_backbone, replace_head
from ft_pipelines.core.pruning import importance_table, l1_scores
from ft_pipelines.core.pruning.importance_table import channel_groups
from ft_pipelines.core.pruning.structural import prune_by_importance

logger = logging.getLogger("profile_onnx")
SIZE, CLASSES = 96, [str(i) for i in range(10)]


def exports(ratio: float, round_tos: list[int | None]) -> dict[str, object]:
    model = replace_head(load_backbone("bundled", input_size=SIZE), len(CLASSES)).eval()
    x = torch.randn(1, 3, SIZE, SIZE)
    scores = l1_scores(model)
    table = importance_table(scores, None, channel_groups(model, x, list(scores),
                                                         [model.classifier]))
    result = {"unpruned": export_classifier(model, CLASSES)}
    for round_to in round_tos:
        pruned = copy.deepcopy(model)
        summary = prune_by_importance(pruned, table, x, ratio, target="macs",
                                      ignored_layers=[pruned.classifier], max_layer_ratio=0.75,
                                      round_to=round_to, feature_floor=32)
        name = f"round_to_{round_to}"
        logger.warning("%s: %.3f of the MACs", name, summary["macs_after"] / summary["macs_before"])
        result[name] = export_classifier(pruned.eval(), CLASSES)
    return result


def _kind(args: dict) -> tuple[str, int]:
    """Node kind and MACs from the shapes onnxruntime ran it with."""
    if "Conv" not in args.get("op_name", ""):
        return args.get("op_name", "?"), 0
    weight = next(iter(args["input_type_shape"][1].values()))
    output = next(iter(args["output_type_shape"][0].values()))
    kind = "depthwise" if weight[1] == 1 else "pointwise" if weight[2] == 1 else "conv kxk"
    return kind, math.prod(output) * math.prod(weight[1:])


def profile(model: object, batch: int, calls: int, threads: int) -> None:
    options = session_options(threads)
    options.enable_profiling = True
    options.profile_file_prefix = tempfile.mkdtemp() + "/profile"
    runner = OnnxRunner(model, CPU, threads)
    runner.session = type(runner.session)(model.model_bytes, options, providers=[CPU])
    x = np.random.default_rng(0).standard_normal((batch, 3, SIZE, SIZE), dtype=np.float32)
    for _ in range(3 + calls):
        runner.run(x)
    events = json.load(open(runner.session.end_profiling()))
    runs = [e["dur"] for e in events if e.get("name") == "model_run"][3:]
    nodes: dict[str, list[float]] = collections.defaultdict(list)
    kinds = {}
    for event in events:
        if event.get("cat") == "Node" and event["name"].endswith("_kernel_time"):
            nodes[event["name"]].append(event["dur"])
            kinds[event["name"]] = _kind(event["args"])
    per_kind: dict[str, list[float]] = collections.defaultdict(lambda: [0, 0.0, 0])
    for name, durations in nodes.items():
        kind, macs = kinds[name]
        per_kind[kind][0] += macs
        per_kind[kind][1] += statistics.median(durations[3:] or durations)  # us
        per_kind[kind][2] += 1
    kernels = sum(v[1] for v in per_kind.values())
    call = statistics.median(runs)
    print(f"  batch {batch}: call {call / 1000:.3f} ms, kernels {kernels / 1000:.3f} ms, "
          f"outside kernels {100 * (1 - kernels / call):.0f} % (median call; under load a "
          f"long call is interrupted, kernel medians are not)")
    for kind, (macs, us, count) in sorted(per_kind.items(), key=lambda kv: -kv[1][1]):
        rate = f"{macs / us / 1e3:6.1f} GMAC/s" if macs else ""
        print(f"    {kind:18s} {count:3d} nodes {us / 1000:8.3f} ms {100 * us / kernels:5.1f} % "
              f"{macs / batch / 1e6:7.1f} MMACs/image {rate}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ratio", type=float, default=0.81)
    parser.add_argument("--round-to", nargs="+", default=["8", "16"])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=9)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    torch.set_num_threads(args.threads)
    round_tos = [None if r in ("null", "None") else int(r) for r in args.round_to]
    models = exports(args.ratio, round_tos)
    for name, model in models.items():
        print(name)
        for batch, calls in ((1, 60), (64, 8)):
            profile(model, batch, calls, args.threads)
    timed = {n: onnx_timed_model(OnnxRunner(m, CPU, args.threads), 64) for n, m in models.items()}
    result = compare_timings(timed, 64, rounds=args.rounds, runs=7, warmup=5,
                             reference="unpruned")
    print(f"interleaved ({args.rounds} rounds, {args.threads} thread(s)), ratios within a round:")
    for name, row in result.items():
        print(f"  {name:14s} b1 {row['latency_ms']:.3f} ms (IQR {row['latency_spread_ms']:.3f}) "
              f"b64 {row['throughput']:.0f}/s  latency x{row['latency_ratio']:.3f}  "
              f"throughput x{row['throughput_ratio']:.2f}")


if __name__ == "__main__":
    main()
