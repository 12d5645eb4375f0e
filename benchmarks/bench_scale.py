"""Scaling benchmark: wall time and peak RSS versus the number of images (manifest mode).

For each size the script writes a synthetic image folder (160x120 JPEGs, 10 classes, one colour
pattern per class plus noise) once, then measures, each in a fresh subprocess so that peak RSS
(``ru_maxrss`` of that process) is its own:

* ``pipelines``: ``kedro run`` of data_ingestion + pretrained_backbone + similarity_analysis +
  strategy_selection (env ``ci`` with the cap per class lifted), manifest forced by
  ``ingestion.embed_bytes_max_mb`` (16 by default), decoded at ``--size`` px;
* ``finetune``: one epoch of partial fine-tuning (``trainable_blocks=2``) with ``Trainer`` on at
  most ``--finetune-cap`` training images, streamed from the on-disk shards (no activation cache
  unless ``--cache``: the cache would hold every image's prefix activations in RAM).

Goals (issue 10): seconds per 1,000 images constant within 20% from 2k to 32k; peak RSS of the
pipelines at 32k <= 1.3x that at 2k; the stored ``images`` table <= 10% of the folder's bytes.

Example (the full run; see docs/performance.md for the expected duration)::

    OMP_NUM_THREADS=2 PYTHONPATH=src python benchmarks/bench_scale.py \
        --images 2000 8000 32000 --out benchmarks/results/scale.json \
        --markdown docs/_bench_scale_table.md
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # tests.project_copy: the throw-away project copy the tests use

logger = logging.getLogger("bench_scale")

NUM_CLASSES = 10
WIDTH, HEIGHT = 160, 120
FIRST_STAGES = ["data_ingestion", "pretrained_backbone", "similarity_analysis",
                "strategy_selection"]
TIME_TOLERANCE = 0.20   # seconds per 1,000 images may vary this much from the smallest size
RSS_MAX_RATIO = 1.3     # peak RSS of the largest size / smallest size
TABLE_MAX_SHARE = 0.10  # stored images table / folder bytes


# --------------------------------------------------------------------------- data
def make_folder(folder: Path, count: int, seed: int = 0) -> Path:
    """``count`` JPEGs in ``NUM_CLASSES`` class folders; kept and reused once complete."""
    from PIL import Image

    done = folder / ".complete"
    if done.exists():
        return folder
    shutil.rmtree(folder, ignore_errors=True)
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:HEIGHT, 0:WIDTH]
    for index in range(count):
        label = index % NUM_CLASSES
        (folder / f"class_{label}").mkdir(parents=True, exist_ok=True)
        # a class-specific stripe frequency and colour, random phase and noise: distinct JPEGs
        phase = rng.uniform(0, 2 * np.pi)
        wave = np.sin((x * (label + 1) / 12.0) + y / 20.0 + phase)
        colour = np.array([(label * 37) % 255, (label * 91) % 255, (label * 151) % 255])
        pixels = 128 + 60 * wave[..., None] + (colour - 128) * 0.4
        pixels = pixels + rng.normal(0, 12, (HEIGHT, WIDTH, 3))
        image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
        image.save(folder / f"class_{label}" / f"{index:06d}.jpg", quality=90)
    done.write_text(str(count))
    return folder


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*.jpg"))


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


# --------------------------------------------------------------------------- children
def child_pipelines(args: argparse.Namespace) -> dict[str, Any]:
    """The first four stages through ``kedro run`` (a KedroSession) in a throw-away project."""
    from kedro.framework.session import KedroSession
    from kedro.framework.startup import bootstrap_project

    from tests.project_copy import copy_project

    work = Path(args.work).resolve()
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    copy_project(work)
    bootstrap_project(work)
    os.chdir(work)
    params = {
        "ingestion": {"source": "image_folder", "path": str(Path(args.folder).resolve()),
                      "embed_bytes_max_mb": args.embed_mb, "max_per_class": 10**9,
                      "decode_cache_dir": str(work / "decoded")},
        "backbone": {"input_size": args.size},
        "similarity": {"max_images": args.similarity_images},
    }
    seconds = {}
    # two sessions: ingestion alone (all O(N)), then the rest (decoding O(N), similarity on a
    # fixed subset, model loading: a fixed cost that small sizes pay per image more)
    for name, stages in (("ingestion", FIRST_STAGES[:1]), ("rest", FIRST_STAGES[1:])):
        started = time.perf_counter()
        with KedroSession.create(project_path=work, env="ci", runtime_params=params) as session:
            session.run(pipeline_names=stages)
        seconds[name] = time.perf_counter() - started
    table_file = max((work / "data/ci/03_primary/images.parquet").iterdir()) / "images.parquet"
    return {"seconds": sum(seconds.values()), "ingestion_seconds": seconds["ingestion"],
            "rest_seconds": seconds["rest"], "peak_rss_mb": peak_rss_mb(),
            "table_bytes": table_file.stat().st_size}


def child_finetune(args: argparse.Namespace) -> dict[str, Any]:
    """One epoch of partial fine-tuning, images streamed from the manifest's shards."""
    import pandas as pd
    import torch

    from ft_pipelines.core.data import MappedImages, split_image_data
    from ft_pipelines.core.models import apply_surgery, load_backbone
    from ft_pipelines.core.training import TrainConfig, Trainer, default_callbacks
    from ft_pipelines.core.utils import head_parameter_names

    work = Path(args.work).resolve()
    table_file = max((work / "data/ci/03_primary/images.parquet").iterdir()) / "images.parquet"
    table = pd.read_parquet(table_file)
    splits = split_image_data(table, args.size, work / "decoded")
    train = capped(splits["train"], args.finetune_cap, args.seed)
    val = capped(splits["val"], max(1, args.finetune_cap // 5), args.seed + 1)
    if not isinstance(train.images, MappedImages):
        raise RuntimeError("The table is not a manifest: lower --embed-mb.")
    torch.manual_seed(args.seed)
    model = apply_surgery(load_backbone("bundled", input_size=args.size), NUM_CLASSES,
                          trainable_blocks=2)
    config = TrainConfig(epochs=1, batch_size=args.batch_size, seed=args.seed, device="cpu",
                         use_cache=args.cache, progress=False)
    trainer = Trainer(model, config, None, default_callbacks(config),
                      head_parameter_names(model))
    started = time.perf_counter()
    history = trainer.fit(train, val)
    return {"seconds": time.perf_counter() - started, "peak_rss_mb": peak_rss_mb(),
            "train_images": len(train), "val_images": len(val),
            "val_accuracy": float(history.iloc[-1].get("val_acc", float("nan")))}


def capped(data, cap: int, seed: int):
    """At most ``cap`` rows (seeded), kept as a view of the shards: nothing read here."""
    from ft_pipelines.core.data import ImageData

    if len(data) <= cap:
        return data
    positions = np.sort(np.random.default_rng(seed).permutation(len(data))[:cap])
    return ImageData(data.images.take(positions), data.labels[positions])


CHILDREN = {"pipelines": child_pipelines, "finetune": child_finetune}


# --------------------------------------------------------------------------- parent
def measure(phase: str, folder: Path, work: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Run one phase in a fresh interpreter; its last stdout line is its JSON result."""
    command = [sys.executable, __file__, "--child", phase, "--folder", str(folder),
               "--work", str(work), "--size", str(args.size), "--embed-mb", str(args.embed_mb),
               "--similarity-images", str(args.similarity_images), "--finetune-cap",
               str(args.finetune_cap), "--batch-size", str(args.batch_size),
               "--seed", str(args.seed)] + (["--cache"] if args.cache else [])
    logger.info("%s on %s", phase, folder.name)
    done = subprocess.run(command, check=True, stdout=subprocess.PIPE, text=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def run_size(count: int, args: argparse.Namespace) -> dict[str, Any]:
    root = Path(args.root).resolve()  # the children change directory
    folder = make_folder(root / f"images_{count}", count)
    work = root / f"work_{count}"
    row: dict[str, Any] = {"images": count, "folder_bytes": folder_bytes(folder)}
    for phase in args.phases:
        result = measure(phase, folder, work, args)
        row[phase] = result
        per = result.get("train_images", count)
        result["seconds_per_1000"] = result["seconds"] * 1000.0 / per
        if "ingestion_seconds" in result:
            result["ingestion_seconds_per_1000"] = result["ingestion_seconds"] * 1000.0 / per
    if "pipelines" in row:
        row["table_share"] = row["pipelines"]["table_bytes"] / row["folder_bytes"]
    shutil.rmtree(work, ignore_errors=True)  # the decoded shards: up to GBs at 32k
    return row


def verdicts(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The issue's goals, smallest size as the reference."""
    first, result = rows[0], {}
    for phase in ("pipelines", "finetune"):
        if phase not in first:
            continue
        base = first[phase]["seconds_per_1000"]
        worst = max(abs(r[phase]["seconds_per_1000"] / base - 1) for r in rows)
        result[f"{phase}_time_per_1000_within_20pct"] = worst <= TIME_TOLERANCE
        result[f"{phase}_time_per_1000_max_deviation"] = round(worst, 3)
    if "pipelines" in first:
        base = first["pipelines"]["ingestion_seconds_per_1000"]
        worst = max(abs(r["pipelines"]["ingestion_seconds_per_1000"] / base - 1) for r in rows)
        result["ingestion_time_per_1000_within_20pct"] = worst <= TIME_TOLERANCE
        result["ingestion_time_per_1000_max_deviation"] = round(worst, 3)
    if "pipelines" in first and len(rows) >= 3:
        # fixed costs cancel in differences: the added seconds per added 1,000 images
        marginal = [1000 * (b["pipelines"]["seconds"] - a["pipelines"]["seconds"])
                    / (b["images"] - a["images"]) for a, b in zip(rows, rows[1:], strict=False)]
        result["pipelines_marginal_seconds_per_1000"] = [round(m, 3) for m in marginal]
        result["pipelines_marginal_within_20pct"] = bool(
            max(abs(m / marginal[0] - 1) for m in marginal) <= TIME_TOLERANCE)
    if "pipelines" in first:
        ratio = rows[-1]["pipelines"]["peak_rss_mb"] / first["pipelines"]["peak_rss_mb"]
        result["pipelines_rss_ratio_largest_vs_smallest"] = round(ratio, 3)
        result["pipelines_rss_within_1_3x"] = ratio <= RSS_MAX_RATIO
        result["table_share_max"] = round(max(r["table_share"] for r in rows), 4)
        result["table_within_10pct"] = result["table_share_max"] <= TABLE_MAX_SHARE
    return result


def markdown(rows: list[dict[str, Any]]) -> str:
    lines = ["| images | folder MB | table % | ingestion s / 1k | first stages s | s / 1k "
             "| peak RSS MB | fine-tune images | epoch s | s / 1k | peak RSS MB |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        p, f = r.get("pipelines", {}), r.get("finetune", {})
        lines.append(
            f"| {r['images']} | {r['folder_bytes'] / 2**20:.1f} | "
            f"{100 * r.get('table_share', float('nan')):.2f} | "
            f"{p.get('ingestion_seconds_per_1000', float('nan')):.2f} | "
            f"{p.get('seconds', float('nan')):.1f}"
            f" | {p.get('seconds_per_1000', float('nan')):.2f} | "
            f"{p.get('peak_rss_mb', float('nan')):.0f} | {f.get('train_images', '-')} | "
            f"{f.get('seconds', float('nan')):.1f} | {f.get('seconds_per_1000', float('nan')):.2f}"
            f" | {f.get('peak_rss_mb', float('nan')):.0f} |")
    return "\n".join(lines) + "\n"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, nargs="+", default=[2000, 8000, 32000])
    parser.add_argument("--phases", nargs="+", choices=sorted(CHILDREN),
                        default=["pipelines", "finetune"])
    parser.add_argument("--root", default=str(ROOT / "benchmarks/results/scale"),
                        help="where the synthetic folders and the throw-away projects go")
    parser.add_argument("--size", type=int, default=64, help="backbone input size (px)")
    parser.add_argument("--embed-mb", type=float, default=16.0)
    parser.add_argument("--similarity-images", type=int, default=600)
    parser.add_argument("--finetune-cap", type=int, default=4000)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--cache", action="store_true", help="Trainer's activation cache on")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None, help="JSON results file")
    parser.add_argument("--markdown", default=None, help="markdown table file")
    parser.add_argument("--child", choices=sorted(CHILDREN), help=argparse.SUPPRESS)
    parser.add_argument("--folder", help=argparse.SUPPRESS)
    parser.add_argument("--work", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.child is None else logging.WARNING,
                        format="%(asctime)s %(name)s %(message)s", stream=sys.stderr)
    if args.child:
        sys.stdout.write(json.dumps(CHILDREN[args.child](args)) + "\n")
        return
    rows = [run_size(count, args) for count in sorted(args.images)]
    report = {"rows": rows, "goals": verdicts(rows), "settings": {
        k: v for k, v in vars(args).items() if k not in ("child", "folder", "work")},
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                    "load_average": os.getloadavg(),
                    "omp_threads": os.environ.get("OMP_NUM_THREADS")}}
    logger.info("Goals: %s", json.dumps(report["goals"]))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(report, indent=2))
    if args.markdown:
        Path(args.markdown).write_text(markdown(rows))
    sys.stdout.write(markdown(rows))


if __name__ == "__main__":
    main()
