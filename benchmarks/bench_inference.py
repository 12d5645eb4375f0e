"""Inference speed: PyTorch eager vs ONNX Runtime fp32 vs ONNX Runtime int8, fine-tuned vs pruned.

    python benchmarks/bench_inference.py --threads 2 \
        --out benchmarks/results/inference.json --markdown docs/_bench_inference_table.md

Models: by default the newest ``finetuned_model`` and ``pruned_model`` of the default run
(``kedro run`` first); ``--model name=path`` adds or replaces one (a model artifact
``.safetensors`` or a versioned dataset folder, newest version). ``--round-to null 8 16`` also
prunes the fine-tuned model once per value through the pruning stage's own function
(``prune_and_finetune`` with ``conf/base/parameters_pruning.yml`` plus ``round_to``), so
hardware-aligned channel counts are measured next to the others.

Every model runs three ways on the same thread count (``torch.set_num_threads`` and
onnxruntime's ``intra_op_num_threads``): PyTorch eager, its ONNX export with onnxruntime (fp32),
and the int8 static quantisation of that export (QDQ, per-channel, calibrated on training
images), each through the project's functions (``core.evaluation.cost_metrics``,
``core.export``). Per row: test top-1, MACs, parameters, size, latency at batch 1 (median of
``--runs``) and throughput at batch ``--batch``. The markdown table goes to stdout and to
``--markdown``; the goals of issue 9 are checked below it. Run on an idle machine.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import platform
import re
import sys
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pandas as pd
import torch
import yaml
from torch import nn

from ft_pipelines.core import evaluation as m
from ft_pipelines.core.data import ImageData, split_image_data, stratified_subset
from ft_pipelines.core.evaluation.settings import TimingParams
from ft_pipelines.core.export import evaluate_onnx, export_classifier, quantize_int8
from ft_pipelines.core.models import load_model_file, newest_artifact
from ft_pipelines.core.pruning import prune_and_finetune

logger = logging.getLogger("bench_inference")
ROOT = Path(__file__).resolve().parents[1]
RUNTIMES = ("pytorch", "ort_fp32", "ort_int8")


def newest(folder: Path) -> Path:
    files = sorted(folder.glob("*/*"))
    if not files:
        raise FileNotFoundError(f"Nothing under {folder}: run `kedro run` first")
    return files[-1]


def load_model(path: Path) -> nn.Module:
    return load_model_file(newest_artifact(path) if path.is_dir() else path)


def load_data(data: Path, size: int, max_test: int | None) -> tuple[dict[str, ImageData], list]:
    images = pd.read_parquet(newest(data / "03_primary/images.parquet"))
    class_names = json.loads(newest(data / "03_primary/class_names.json").read_text())
    splits = split_image_data(images, size, None)
    splits["test"] = stratified_subset(splits["test"], max_test, 0)
    return splits, class_names


def pruning_params(epochs: int | None) -> dict[str, Any]:
    """The pruning stage's parameters; refuses when it does not know ``round_to`` yet."""
    params = yaml.safe_load((ROOT / "conf/base/parameters_pruning.yml").read_text())["pruning"]
    if "round_to" not in params:
        raise SystemExit("This version of the pruning stage has no pruning.round_to (not in "
                         "conf/base/parameters_pruning.yml): --round-to cannot be measured yet; "
                         "pass pruned artifacts with --model name=path instead")
    return params if epochs is None else {**params, "finetune_epochs": epochs}


def pruned_variants(finetuned: nn.Module, data: Path, splits: dict[str, ImageData],
                    round_tos: list[int | None], params: dict[str, Any]
                    ) -> dict[str, nn.Module]:
    """The fine-tuned model pruned once per ``round_to`` by the pruning stage's function."""
    table = pd.read_parquet(newest(data / "07_model_output/channel_importance.parquet"))
    variants = {}
    for round_to in round_tos:
        logger.warning("Pruning with round_to=%s ...", round_to)
        model, _, _ = prune_and_finetune(finetuned, table, splits, {
            **params, "round_to": round_to, "input_scales": []})  # round_to alone
        variants[f"pruned_round_to_{round_to}"] = model.eval()
    return variants


def measure(name: str, model: nn.Module, splits: dict[str, ImageData], class_names: list[str],
            params: TimingParams, threads: int, calibration: int) -> list[dict[str, Any]]:
    """One row per runtime: PyTorch eager, ONNX Runtime fp32, ONNX Runtime int8."""
    test, cfg = splits["test"], model.backbone_cfg
    probs = m.predict(model, test.images, cfg.mean, cfg.std)
    torch_row = {**m.classification_metrics(probs, test.labels.numpy(), class_names),
                 **m.cost_metrics(model, params)}
    fp32 = export_classifier(model, class_names)
    calibration_images = stratified_subset(splits["train"], calibration, 0).images.numpy()
    int8 = quantize_int8(fp32, calibration_images)
    rows = []
    for runtime, scores in (
            ("pytorch", torch_row),
            ("ort_fp32", evaluate_onnx(fp32, test, class_names, params, threads=threads)),
            ("ort_int8", evaluate_onnx(int8, test, class_names, params, threads=threads))):
        rows.append({"model": name, "runtime": runtime,
                     **{k: scores[k] for k in ("top1", "macs", "params", "size_bytes",
                                               "latency_ms", "latency_p90_ms", "throughput",
                                               "throughput_batch")}})
        logger.warning("%s / %s: top-1 %.4f, %.2f ms, %.0f img/s", name, runtime,
                       scores["top1"], scores["latency_ms"], scores["throughput"])
    return rows


def _row(rows: list[dict], model: str, runtime: str) -> dict | None:
    return next((r for r in rows if r["model"] == model and r["runtime"] == runtime), None)


def goals(rows: list[dict], reference: str) -> list[str]:
    """Issue 9's targets: ORT pruned latency <= 0.5x PyTorch fine-tuned; int8 <= 0.6x ORT fp32."""
    base = _row(rows, reference, "pytorch")
    lines = []
    for model in dict.fromkeys(r["model"] for r in rows):
        fp32, int8 = _row(rows, model, "ort_fp32"), _row(rows, model, "ort_int8")
        if model != reference and base:
            ratio = fp32["latency_ms"] / base["latency_ms"]
            lines.append(f"- {model}, ONNX Runtime fp32 latency / PyTorch {reference}: "
                         f"{ratio:.2f}x (goal <= 0.5x: {'met' if ratio <= 0.5 else 'not met'})")
        ratio = int8["latency_ms"] / fp32["latency_ms"]
        lines.append(f"- {model}, int8 / fp32 ONNX Runtime latency: {ratio:.2f}x "
                     f"(goal <= 0.6x: {'met' if ratio <= 0.6 else 'not met'})")
    return lines


def markdown(rows: list[dict], reference: str, environment: dict[str, Any]) -> str:
    base = _row(rows, reference, "pytorch")
    batch = rows[0]["throughput_batch"]
    lines = [f"{environment['threads']} threads; {environment['cpu']}; torch "
             f"{environment['torch']}, onnxruntime {environment['onnxruntime']}; test images: "
             f"{environment['test_images']}; {environment['date']}.", "",
             f"| model | runtime | test top-1 | MMACs | params | size (MB) | latency b1 (ms) | "
             f"p90 (ms) | throughput b{batch} (img/s) | latency vs PyTorch {reference} | "
             f"throughput vs PyTorch {reference} |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(
            f"| {r['model']} | {r['runtime']} | {100 * r['top1']:.2f}% | {r['macs'] / 1e6:.1f} | "
            f"{r['params']:,} | {r['size_bytes'] / 1e6:.2f} | {r['latency_ms']:.2f} | "
            f"{r['latency_p90_ms']:.2f} | {r['throughput']:.0f} | "
            f"{r['latency_ms'] / base['latency_ms']:.2f}x | "
            f"{r['throughput'] / base['throughput']:.2f}x |")
    return "\n".join([*lines, "", *goals(rows, reference)]) + "\n"


def cpu_name() -> str:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.machine()
    match = re.search(r"^model name\s*:\s*(.+)$", text, re.MULTILINE)
    return match.group(1).strip() if match else platform.machine()


def parse_round_to(value: str) -> int | None:
    return None if value.lower() in ("null", "none") else int(value)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT / "data")
    parser.add_argument("--model", action="append", default=[], metavar="NAME=PATH",
                        help="model artifact (.safetensors or versioned folder); repeatable")
    parser.add_argument("--round-to", type=parse_round_to, nargs="*", default=[],
                        help="also prune the fine-tuned model with these round_to (null, 8, 16)")
    parser.add_argument("--finetune-epochs", type=int, default=None,
                        help="pruning's final fine-tuning epochs for --round-to (default: conf)")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--runs", type=int, default=50, help="timed batch-1 runs")
    parser.add_argument("--batch", type=int, default=64, help="throughput batch size")
    parser.add_argument("--calibration-images", type=int, default=128)
    parser.add_argument("--max-test-images", type=int, default=None,
                        help="stratified subset of the test split (smoke runs)")
    parser.add_argument("--out", type=Path, default=None, help="raw rows as JSON")
    parser.add_argument("--markdown", type=Path, default=None)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s: %(message)s")
    torch.set_num_threads(args.threads)
    prune_with = pruning_params(args.finetune_epochs) if args.round_to else None

    paths = {"finetuned": args.data / "06_models/finetuned_model.safetensors",
             "pruned": args.data / "06_models/pruned_model.safetensors"}
    paths.update(dict(spec.split("=", 1) for spec in args.model))
    models = {name: load_model(Path(path)).eval() for name, path in paths.items()}
    reference = next(iter(models))
    size = models[reference].backbone_cfg.input_size
    splits, class_names = load_data(args.data, size, args.max_test_images)
    if args.round_to:
        models.update(pruned_variants(models[reference], args.data, splits, args.round_to,
                                      prune_with))
    params = TimingParams(latency_runs=args.runs, latency_warmup=10, throughput_batch=args.batch)
    # a model the pruning search shrank (pruning.input_scales) is scored at its own size
    by_size = {size: splits, **{m.backbone_cfg.input_size: load_data(
        args.data, m.backbone_cfg.input_size, args.max_test_images)[0]
        for m in models.values() if m.backbone_cfg.input_size != size}}
    rows = [row for name, model in models.items()
            for row in measure(name, model, by_size[model.backbone_cfg.input_size], class_names,
                               params, args.threads, args.calibration_images)]
    environment = {"date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                   "threads": args.threads, "cpu": cpu_name(), "torch": torch.__version__,
                   "onnxruntime": ort.__version__, "test_images": len(splits["test"]),
                   "models": {name: str(path) for name, path in paths.items()}}
    table = markdown(rows, reference, environment)
    sys.stdout.write(table)  # the product of this script
    if args.markdown:
        args.markdown.write_text(table)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"environment": environment, "rows": rows}, indent=2,
                                       default=lambda v: v.item() if isinstance(v, np.generic)
                                       else str(v)))


if __name__ == "__main__":
    main()
