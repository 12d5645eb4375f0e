"""Run fingerprints: the same initial weights, data, settings, inputs, code, libraries and thread
count give the same id (and so the same checkpoint folder, which is how an interrupted run is
found again). Anything that can change the result changes the id, so a checkpoint never serves
a run it does not belong to (e.g. after a bug fix or a library upgrade)."""

from __future__ import annotations

import functools
import hashlib
import json
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

#: Settings that change how a run executes or is kept, not what it computes: left out.
RUN_ONLY_KEYS = ("device", "progress", "resume", "checkpoint_dir", "keep_checkpoints")
#: Libraries whose version changes the numbers a run produces.
RESULT_LIBRARIES = ("torch", "timm", "torch-pruning", "numpy")
_PACKAGE_ROOT = Path(__file__).resolve().parents[2]  # src/ft_pipelines


@functools.cache
def code_fingerprint() -> str:
    """The package version plus a hash of every source file of the package."""
    digest = hashlib.sha256()
    for path in sorted(_PACKAGE_ROOT.rglob("*.py")):
        digest.update(path.relative_to(_PACKAGE_ROOT).as_posix().encode())
        digest.update(path.read_bytes())
    return f"{package_version('ft_pipelines')}+{digest.hexdigest()[:16]}"


def package_version(distribution: str) -> str | None:
    """The installed version of ``distribution``; None when it is not installed."""
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def environment_fingerprint() -> dict[str, Any]:
    """What, besides the inputs, decides the numbers: code, library versions, thread count."""
    return {
        "code": code_fingerprint(),
        "libraries": {name: package_version(name) for name in RESULT_LIBRARIES},
        "threads": torch.get_num_threads(),
    }


def _update(digest: Any, value: Any) -> None:
    """Feed one input into the digest, whatever its kind."""
    if isinstance(value, nn.Module):
        value = value.state_dict()
    if isinstance(value, torch.Tensor):
        digest.update(str((value.dtype, tuple(value.shape))).encode())
        digest.update(value.detach().cpu().contiguous().numpy().tobytes())
    elif isinstance(value, pd.DataFrame):
        digest.update(json.dumps([list(map(str, value.columns)), list(map(str, value.dtypes))])
                      .encode())
        try:
            digest.update(pd.util.hash_pandas_object(value, index=True).to_numpy().tobytes())
        except TypeError:  # unhashable cells (lists): their JSON text instead
            digest.update(value.to_json(orient="split", double_precision=15).encode())
    elif isinstance(value, np.ndarray):
        digest.update(np.ascontiguousarray(value).tobytes())
    elif isinstance(value, dict) and any(isinstance(v, torch.Tensor | nn.Module | pd.DataFrame)
                                         for v in value.values()):
        for key in sorted(value):
            digest.update(str(key).encode())
            _update(digest, value[key])
    else:
        digest.update(json.dumps(value, sort_keys=True, default=str).encode())


def content_fingerprint(value: Any) -> str:
    """A short hash of one value (a model's weights, a table, a JSON-like plan), hashed as run
    fingerprints hash their inputs."""
    digest = hashlib.sha256()
    _update(digest, value)
    return digest.hexdigest()[:16]


def run_fingerprint(
    model: nn.Module, data_key: str, plan: dict, params: dict,
    inputs: dict[str, Any] | None = None,
) -> str:
    """Identifies a training run: initial weights, data, plan, settings (less RUN_ONLY_KEYS),
    any further node ``inputs`` (tables, tensors), code, library versions and thread count."""
    digest = hashlib.sha256()
    _update(digest, model)
    settings = {k: v for k, v in params.items() if k not in RUN_ONLY_KEYS}
    _update(digest, [data_key, plan, settings, environment_fingerprint()])
    for name in sorted(inputs or {}):
        digest.update(name.encode())
        _update(digest, inputs[name])
    return digest.hexdigest()[:16]
