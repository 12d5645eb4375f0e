"""Plain state dicts read from disk without running code (a leaf: imports no project module)."""

from __future__ import annotations

import pickle
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

_FIX = ("backbone.path must name a plain state dict (tensors by name) saved with "
        "safetensors.torch.save_file or torch.save(model.state_dict(), path); a pickled model "
        "or object is never unpickled (it could run code). Re-save the weights as a state dict "
        "from the code that made them, or, for a model saved by this project, use "
        "backbone.source=artifact.")


def load_state_dict_file(path: str | Path) -> dict[str, torch.Tensor]:
    """A plain state dict from ``.safetensors`` or, with the restricted unpickler, ``.pt/.pth``."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"backbone.path={str(path)!r} does not exist")
    if path.suffix == ".safetensors":
        try:
            return load_file(str(path))
        except (SafetensorError, OSError, ValueError) as err:
            raise ValueError(f"backbone.path={str(path)!r} is not a readable safetensors file "
                             f"({err}). {_FIX}") from err
    if path.suffix in (".pt", ".pth", ".bin"):
        # weights_only=True refuses arbitrary objects: a tampered file cannot run code.
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError):
            # torch's own message suggests weights_only=False: exactly what must not be done
            raise ValueError(f"backbone.path={str(path)!r} is not a state dict the safe loader "
                             "reads: a pickle of other Python objects (a whole model, a custom "
                             f"class) or a damaged file. {_FIX}") from None
        state = state.get("state_dict", state) if isinstance(state, dict) else state
        if not isinstance(state, dict) or not all(
                isinstance(v, torch.Tensor) for v in state.values()):
            raise ValueError(f"backbone.path={str(path)!r} is not a state dict (tensors by "
                             f"name) but a {type(state).__name__}. {_FIX}")
        return state
    raise ValueError(f"{path}: unsupported weights file; use .safetensors, .pt or .pth")
