"""Run fingerprints: the same initial weights, data and settings give the same id (and so the
same checkpoint folder, which is how an interrupted run is found again)."""

from __future__ import annotations

import hashlib
import json

from torch import nn

#: Settings that change how a run executes, not what it computes: left out of the fingerprint.
RUN_ONLY_KEYS = ("device", "progress", "resume", "checkpoint_dir", "delta_probe_images")


def run_fingerprint(model: nn.Module, data_key: str, plan: dict, params: dict) -> str:
    """Identifies a training run: same initial weights, data, plan and settings -> same id."""
    digest = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    settings = {k: v for k, v in params.items() if k not in RUN_ONLY_KEYS}
    digest.update(json.dumps([data_key, plan, settings], sort_keys=True, default=str).encode())
    return digest.hexdigest()[:16]
