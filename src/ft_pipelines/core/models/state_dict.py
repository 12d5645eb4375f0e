"""Plain state dicts read from disk without running code (a leaf: imports no project module)."""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file


def load_state_dict_file(path: str | Path) -> dict[str, torch.Tensor]:
    """A plain state dict from ``.safetensors`` or, with the restricted unpickler, ``.pt/.pth``."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"backbone.path={str(path)!r} does not exist")
    if path.suffix == ".safetensors":
        return load_file(str(path))
    if path.suffix in (".pt", ".pth", ".bin"):
        # weights_only=True refuses arbitrary objects: a tampered file cannot run code.
        state = torch.load(path, map_location="cpu", weights_only=True)
        return state.get("state_dict", state) if isinstance(state, dict) else state
    raise ValueError(f"{path}: unsupported weights file; use .safetensors, .pt or .pth")
