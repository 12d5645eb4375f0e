"""Model artifacts without pickle: one safetensors file holding the weights and, in its metadata,
the JSON spec (backbone config, surgery applied, channel counts, trainable parameters).

Loading rebuilds the architecture from the spec, replays the surgery, resizes the layers a pruned
network shrank, then loads the weights strictly: the result is an identical module.
"""

from __future__ import annotations

import json
import re
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save as safetensors_bytes
from torch import nn

from ft_pipelines.core.models.architectures import build_architecture, resolve_library
from ft_pipelines.core.models.config import BackboneConfig, attach_config
from ft_pipelines.core.models.provenance import ATTRIBUTE, training_data
from ft_pipelines.core.models.surgery import drop_last_blocks, replace_head
from ft_pipelines.core.utils import atomic_write

SPEC_KEY = "ft_pipelines.spec"
FORMAT = "ft_pipelines.model/1"


def channel_counts(model: nn.Module) -> dict[str, list[int]]:
    """``{module: [in, out, groups]}`` per conv, ``[features]`` per BN, ``[in, out]`` per linear."""
    counts: dict[str, list[int]] = {}
    for name, m in model.named_modules():
        if isinstance(m, nn.Conv2d):
            counts[name] = [m.in_channels, m.out_channels, m.groups]
        elif isinstance(m, nn.modules.batchnorm._BatchNorm):
            counts[name] = [m.num_features]
        elif isinstance(m, nn.Linear):
            counts[name] = [m.in_features, m.out_features]
    return counts


def model_spec(model: nn.Module) -> dict[str, Any]:
    """Everything needed to rebuild ``model`` except the weights."""
    if not hasattr(model, "backbone_cfg"):
        raise ValueError(
            "This model has no backbone_cfg: create it with "
            "ft_pipelines.core.models.load_backbone"
        )
    return {
        "format": FORMAT,
        "backbone": model.backbone_cfg.to_dict(),
        "surgery": dict(getattr(model, "surgery", {}) or {}),
        "channels": channel_counts(model),
        "trainable": [n for n, p in model.named_parameters() if p.requires_grad],
        "data": training_data(model),
    }


def _resize_conv(conv: nn.Conv2d, in_ch: int, out_ch: int, groups: int) -> None:
    kernel = conv.kernel_size
    conv.weight = nn.Parameter(torch.empty(out_ch, in_ch // groups, *kernel))
    if conv.bias is not None:
        conv.bias = nn.Parameter(torch.empty(out_ch))
    conv.in_channels, conv.out_channels, conv.groups = in_ch, out_ch, groups


def _resize_bn(bn: nn.modules.batchnorm._BatchNorm, features: int) -> None:
    bn.num_features = features
    if bn.affine:
        bn.weight = nn.Parameter(torch.empty(features))
        bn.bias = nn.Parameter(torch.empty(features))
    if bn.track_running_stats:
        bn.running_mean = torch.zeros(features)
        bn.running_var = torch.ones(features)


def _resize_linear(linear: nn.Linear, in_f: int, out_f: int) -> None:
    linear.weight = nn.Parameter(torch.empty(out_f, in_f))
    if linear.bias is not None:
        linear.bias = nn.Parameter(torch.empty(out_f))
    linear.in_features, linear.out_features = in_f, out_f


def apply_channel_counts(model: nn.Module, channels: dict[str, list[int]]) -> None:
    """Shrink layers to the saved channel counts (a pruned network) in place."""
    modules = dict(model.named_modules())
    for name, counts in channels.items():
        m = modules.get(name)
        if m is None:
            raise ValueError(f"Artifact spec names layer {name!r} that the architecture lacks")
        if counts == channel_counts(m).get("", counts):
            continue
        if isinstance(m, nn.Conv2d):
            _resize_conv(m, *counts)
        elif isinstance(m, nn.modules.batchnorm._BatchNorm):
            _resize_bn(m, *counts)
        elif isinstance(m, nn.Linear):
            _resize_linear(m, *counts)


def _class_count(spec: dict[str, Any], config: BackboneConfig) -> int:
    """The classifier's outputs: the surgery's class count, else the source's (checked int)."""
    classes = spec.get("surgery", {}).get("num_classes", config.num_source_classes)
    if not isinstance(classes, int) or isinstance(classes, bool) or classes < 1:
        raise ValueError(f"the spec's class count {classes!r} is not a positive integer")
    return classes


def rebuild_model(spec: dict[str, Any]) -> nn.Module:
    """The module described by ``spec`` (random weights): architecture, surgery, channel counts.

    Only architecture names the installed timm/torchvision register are built, never with
    pretrained weights: a crafted spec (``hf-hub:<repo>``, ``local-dir:<path>``, a URL) cannot
    make loading download anything or read outside the artifact. Built under
    ``torch.device("meta")`` it allocates nothing (what :func:`load_model_file` checks first).
    """
    if spec.get("format") != FORMAT:
        raise ValueError(f"Not an ft_pipelines model spec (format={spec.get('format')!r})")
    try:
        config = BackboneConfig.from_dict(spec["backbone"])
    except (KeyError, TypeError, ValueError) as err:
        raise ValueError(f"The spec's backbone entry is malformed ({err!r})") from err
    library = resolve_library(config.architecture, config.library)
    classes = _class_count(spec, config)
    # Built with the final class count: a replaced source head is never allocated, so every
    # size the real build allocates is one the file's header vouches for.
    model = attach_config(build_architecture(config.architecture, library, classes), config)
    surgery = spec.get("surgery", {})
    model = drop_last_blocks(model, int(surgery.get("drop_last_blocks", 0)))
    if "num_classes" in surgery:
        model = replace_head(model, classes)
    model.surgery = dict(surgery)
    apply_channel_counts(model, spec.get("channels", {}))
    head = model.get_submodule(model.backbone_cfg.layout.classifier)
    if head.out_features != classes:  # pruning never changes the class count
        raise ValueError(f"the spec's classifier has {head.out_features} outputs, its class "
                         f"count says {classes}")
    if spec.get("data"):
        setattr(model, ATTRIBUTE, dict(spec["data"]))
    return attach_config(model, config)


def model_to_bytes(model: nn.Module) -> bytes:
    """Serialise weights + spec into one safetensors blob (no pickle anywhere)."""
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    return safetensors_bytes(state, metadata={SPEC_KEY: json.dumps(model_spec(model))})


def _open_error(path: Path, err: Exception) -> ValueError:
    return ValueError(
        f"{path} is not a valid ft_pipelines model artifact (a safetensors file with a "
        f"spec): {err}. Pickled checkpoints are refused on purpose; re-export the model "
        "with ModelArtifactDataset or load its state dict with backbone.source=file."
    )


def _spec_of(path: Path, metadata: dict[str, str]) -> dict[str, Any]:
    if SPEC_KEY not in metadata:
        raise ValueError(
            f"{path} is a safetensors file without an ft_pipelines spec; load it "
            "as a plain state dict with backbone.source=file"
        )
    return json.loads(metadata[SPEC_KEY])


def read_spec(path: str | Path) -> dict[str, Any]:
    """The spec of an artifact without reading its tensors (cheap: the file header only)."""
    path = Path(path)
    try:
        with safe_open(str(path), framework="pt", device="cpu") as handle:
            metadata = handle.metadata() or {}
    except (SafetensorError, OSError, ValueError) as err:
        raise _open_error(path, err) from err
    return _spec_of(path, metadata)


def read_artifact(path: str | Path) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """Spec and tensors of an artifact file; a pickle or truncated file is refused."""
    path = Path(path)
    try:
        with safe_open(str(path), framework="pt", device="cpu") as handle:
            metadata = handle.metadata() or {}
            tensors = {k: handle.get_tensor(k) for k in handle.keys()}  # noqa: SIM118
    except (SafetensorError, OSError, ValueError) as err:
        raise _open_error(path, err) from err
    return _spec_of(path, metadata), tensors


def read_header(path: str | Path) -> tuple[dict[str, Any], dict[str, tuple[int, ...]]]:
    """Spec and tensor shapes of an artifact, from its header alone (no tensor is read)."""
    path = Path(path)
    try:
        with safe_open(str(path), framework="pt", device="cpu") as handle:
            metadata = handle.metadata() or {}
            shapes = {k: tuple(handle.get_slice(k).get_shape()) for k in handle.keys()}  # noqa: SIM118
    except (SafetensorError, OSError, ValueError) as err:
        raise _open_error(path, err) from err
    return _spec_of(path, metadata), shapes


def _weights_mismatch(expected: dict[str, tuple[int, ...]],
                      found: dict[str, tuple[int, ...]]) -> str | None:
    missing = [k for k in expected if k not in found]
    unexpected = [k for k in found if k not in expected]
    shapes = [f"{k}: file {found[k]}, spec {v}"
              for k, v in expected.items() if k in found and found[k] != v]
    problems = [f"{label} {items[:5]}{' ...' if len(items) > 5 else ''}"
                for label, items in (("missing", missing), ("unexpected", unexpected),
                                     ("shape differs", shapes)) if items]
    return "; ".join(problems) or None


def _channel_mismatch(spec: dict[str, Any], found: dict[str, tuple[int, ...]]) -> str | None:
    """The spec's channel counts against the file's shapes (``[in, out, groups]`` per conv,
    ``[features]`` per BN, ``[in, out]`` per linear), for an architecture not buildable on the
    meta device."""
    for name, counts in spec.get("channels", {}).items():
        ok = isinstance(counts, list) and all(
            isinstance(c, int) and not isinstance(c, bool) and c > 0 for c in counts)
        weight = found.get(f"{name}.weight", found.get(f"{name}.running_mean"))
        if ok and len(counts) == 3:
            ok = weight is not None and weight[:2] == (counts[1], counts[0] // counts[2])
        elif ok and len(counts) == 2:
            ok = weight == (counts[1], counts[0])
        elif ok and len(counts) == 1:
            ok = weight == (counts[0],)
        if not ok or len(counts) not in (1, 2, 3):
            return f"shape differs ['{name}: file {weight}, spec channels {counts}']"
    backbone = spec.get("backbone") if isinstance(spec.get("backbone"), dict) else {}
    classifier = (backbone.get("layout") or {}).get("classifier", "")
    classes = spec.get("surgery", {}).get("num_classes", backbone.get("num_source_classes"))
    head = found.get(f"{classifier}.weight")
    if head is None or head[0] != classes:  # the head is built at this size before resizing
        return f"shape differs ['{classifier}.weight: file {head}, spec {classes} classes']"
    return None


def _shapes_of(module: nn.Module) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in module.state_dict().items()}


def _skeleton_mismatch(spec: dict[str, Any], found: dict[str, tuple[int, ...]]) -> str | None:
    """What the spec builds against what the file holds, before allocating anything: the model
    is rebuilt on the meta device (shapes only), so a crafted ``bn1: [250000000]`` costs
    nothing and an architecture swapped for a larger one is seen before it is built."""
    try:
        with torch.device("meta"):
            skeleton = rebuild_model(spec)
    except NotImplementedError:  # an architecture whose constructor needs real data
        return _channel_mismatch(spec, found)
    except (RuntimeError, TypeError, OverflowError, AttributeError) as err:
        raise ValueError(f"the spec cannot be built ({type(err).__name__}: {err})") from err
    return _weights_mismatch(_shapes_of(skeleton), found)


def load_model_file(path: str | Path) -> nn.Module:
    """Rebuild the identical module saved at ``path``; the spec is checked against the file's
    header before anything of the spec's size is allocated."""
    spec, shapes = read_header(path)
    try:
        mismatch = _skeleton_mismatch(spec, shapes)
    except ValueError as err:
        raise ValueError(f"{path}: refusing to load this model artifact: {err}") from err
    if mismatch:
        raise ValueError(
            f"{path}: refusing to load this model artifact: the weights do not match the "
            f"architecture its spec describes ({mismatch}). The file was edited or written by "
            "another version; re-run the stage that wrote it, or pin another version with "
            "--load-versions."
        )
    spec, tensors = read_artifact(path)
    model = rebuild_model(spec)
    model.load_state_dict(tensors, strict=True)
    trainable = set(spec.get("trainable", []))
    for name, p in model.named_parameters():
        p.requires_grad_(name in trainable)
    return model.eval()


def save_model_file(model: nn.Module, path: str | Path) -> None:
    """Write atomically: a killed save never leaves a half-written artifact behind."""
    blob = model_to_bytes(model)
    atomic_write(path, lambda tmp: Path(tmp).write_bytes(blob))


# Kedro's version folder names (UTC timestamps): in this format, text order is time order.
_VERSION = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}\.\d{2}\.\d{2}\.\d{3}Z")


def _written_at(path: Path) -> str:
    """When ``path`` was saved, as a Kedro version string: its version folder's name, else its
    modification time in the same format."""
    if _VERSION.fullmatch(path.parent.name):
        return path.parent.name
    stamp = datetime.fromtimestamp(path.stat().st_mtime, tz=timezone.utc)
    return stamp.strftime("%Y-%m-%dT%H.%M.%S.") + f"{stamp.microsecond // 1000:03d}Z"


def newest_artifact(folder: str | Path) -> Path:
    """The newest artifact inside a folder (a versioned dataset folder or a plain one): the
    latest version, not the last name in alphabetical order; hidden files are never taken."""
    root = Path(folder)
    files = [p for p in root.rglob("*.safetensors")
             if p.is_file() and not any(part.startswith(".") for part in p.relative_to(root).parts)]
    if not files:
        raise FileNotFoundError(f"No model artifact (*.safetensors) under {folder}")
    return max(files, key=lambda p: (_written_at(p), p.as_posix()))
