"""DELTA's channel attention (docs/references.md, "DELTA"): a linear probe on frozen, precomputed
features, then the probe's loss increase when each channel is zeroed (several ablations batched
into one forward pass), turned into per-layer weights."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

import pandas as pd
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm.auto import tqdm

from ft_pipelines.core.data import ImageData
from ft_pipelines.core.models import pooled_stages
from ft_pipelines.core.utils import normalise, preserved_modes

logger = logging.getLogger(__name__)
ATTENTION_COLUMNS = ["layer", "channel", "loss_increase", "weight"]


def _run(stages: Sequence[nn.Module], x: Tensor) -> Tensor:
    for stage in stages:
        x = stage(x)
    return x


def stage_features(stages: Sequence[nn.Module], inputs: Tensor, batch_size: int = 64) -> Tensor:
    """Penultimate features ``[N, D]`` of ``inputs`` through ``stages`` (eval, inference mode)."""
    device = next((p.device for s in stages for p in s.parameters()), inputs.device)
    with preserved_modes(*stages, training=False), torch.inference_mode():
        chunks = [_run(stages, inputs[i:i + batch_size].to(device))
                  for i in range(0, len(inputs), batch_size)]
    return torch.cat(chunks).flatten(1)


def train_linear_probe(
    features: Tensor,
    labels: Tensor,
    num_classes: int,
    *,
    epochs: int = 100,
    lr: float = 1.0,
    weight_decay: float = 1e-3,
    seed: int = 0,
) -> nn.Linear:
    """Linear classifier on FROZEN precomputed ``features`` ``[N, D]`` (full-batch L-BFGS,
    ``epochs`` iterations, cross-entropy + ``weight_decay/2 * ||W||^2``). Returned frozen, eval."""
    if features.dim() != 2 or labels.dim() != 1 or len(features) != len(labels):
        raise ValueError(f"train_linear_probe needs features [N, D] and labels [N]; got "
                         f"{tuple(features.shape)} and {tuple(labels.shape)}.")
    if labels.min() < 0 or labels.max() >= num_classes:
        raise ValueError(f"labels must lie in [0, {num_classes}); got {labels.min()}.."
                         f"{labels.max()}. Check num_classes.")
    # Out of inference mode, and cloned, so tensors made under inference_mode can be used here.
    with torch.inference_mode(False), torch.enable_grad():
        x = features.detach().clone().float()
        y = labels.detach().clone().long().to(x.device)
        generator = torch.Generator().manual_seed(seed)
        probe = nn.Linear(x.shape[1], num_classes).to(x.device)
        with torch.no_grad():
            probe.weight.copy_(torch.randn(probe.weight.shape, generator=generator) * 0.01)
            probe.bias.zero_()
        optimizer = torch.optim.LBFGS(probe.parameters(), lr=lr, max_iter=epochs,
                                      history_size=20, line_search_fn="strong_wolfe")

        def closure() -> Tensor:
            optimizer.zero_grad()
            loss = F.cross_entropy(probe(x), y) + weight_decay / 2 * probe.weight.pow(2).sum()
            loss.backward()
            return loss

        optimizer.step(closure)
        with torch.no_grad():
            accuracy = (probe(x).argmax(1) == y).float().mean().item()
    logger.info("Linear probe: training accuracy %.3f on %d samples", accuracy, len(y))
    return probe.eval().requires_grad_(False)


def _ablation_increase(
    tail: Sequence[nn.Module], probe: nn.Module, activation: Tensor, *, labels: Tensor,
    base_loss: Tensor, ablations_per_forward: int,
) -> Tensor:
    """Per channel: sum over the batch of CE(channel zeroed) - CE(intact); ``[C]``.

    Several ablated copies are stacked along the batch dim and run in one forward pass
    (eval mode makes every sample independent of the others in its batch)."""
    batch, channels = activation.shape[:2]
    increase = torch.zeros(channels, device=activation.device)
    for first in range(0, channels, ablations_per_forward):
        chosen = torch.arange(first, min(first + ablations_per_forward, channels),
                              device=activation.device)
        copies = activation.unsqueeze(0).repeat(len(chosen), *[1] * activation.dim())
        copies[torch.arange(len(chosen), device=activation.device), :, chosen] = 0
        logits = probe(_run(tail, copies.flatten(0, 1)).flatten(1))
        loss = F.cross_entropy(logits, labels.repeat(len(chosen)), reduction="none")
        increase[chosen] = (loss.view(len(chosen), batch) - base_loss).sum(dim=1).float()
    return increase


def _softmax_of_zscores(values: Tensor, temperature: float) -> Tensor:
    std = values.std(unbiased=False)
    z = (values - values.mean()) / std if std > 1e-12 else torch.zeros_like(values)
    return torch.softmax(z / temperature, dim=0)


def _check_attention_args(
    stages: Sequence[nn.Module], layer_indices: Sequence[int], layer_names: Sequence[str],
    *, inputs: Tensor, labels: Tensor, temperature: float, ablations_per_forward: int,
) -> None:
    if len(layer_indices) != len(layer_names):
        raise ValueError(f"layer_indices ({len(layer_indices)}) and layer_names "
                         f"({len(layer_names)}) must have the same length.")
    bad = [i for i in layer_indices if not 0 <= i < len(stages)]
    if bad:
        raise ValueError(f"layer_indices {bad} out of range for {len(stages)} stages.")
    if len(inputs) != len(labels) or len(inputs) == 0:
        raise ValueError(f"inputs ({len(inputs)}) and labels ({len(labels)}) must be the same "
                         "non-zero length.")
    if temperature <= 0 or ablations_per_forward < 1:
        raise ValueError("temperature must be > 0 and ablations_per_forward >= 1.")


def delta_channel_attention(  # noqa: PLR0917 (the six data arguments are all required)
    stages: Sequence[nn.Module],
    layer_indices: Sequence[int],
    layer_names: Sequence[str],
    probe: nn.Linear,
    inputs: Tensor,
    labels: Tensor,
    *,
    temperature: float = 5.0,
    ablations_per_forward: int = 16,
    batch_size: int = 64,
    progress: bool = False,
) -> pd.DataFrame:
    """DELTA channel weights from the probe's cross-entropy increase when a channel is zeroed.

    ``stages`` applied in order map ``inputs`` (normalised images) to the penultimate ``[N, D]``
    features the ``probe`` reads. For each ``layer_indices[j]`` the activation after that stage
    is computed once per batch; each channel is zeroed and the remaining stages plus the probe
    are run (``ablations_per_forward`` channels per forward). Mean increase over the samples,
    z-scored per layer, softmax(z / temperature) -> weights summing to 1 per layer.
    Memory per forward: ``ablations_per_forward * batch_size`` images through the later stages.
    Returns columns ``layer`` (from ``layer_names``), ``channel``, ``loss_increase``, ``weight``.
    """
    _check_attention_args(stages, layer_indices, layer_names, inputs=inputs, labels=labels,
                          temperature=temperature, ablations_per_forward=ablations_per_forward)
    device = probe.weight.device
    totals: dict[int, Tensor] = {}
    wanted = set(layer_indices)
    n_batches = -(-len(inputs) // batch_size)
    bar = tqdm(total=n_batches * len(layer_indices), disable=not progress, desc="ablation")
    with preserved_modes(*stages, probe, training=False), torch.inference_mode(), bar:
        for start in range(0, len(inputs), batch_size):
            x = inputs[start:start + batch_size].to(device)
            y = labels[start:start + batch_size].to(device).long()
            activations = {}
            for i, stage in enumerate(stages):
                x = stage(x)
                if i in wanted:  # cached once per batch; a clone, in case a later op is in-place
                    activations[i] = x.clone()
            base_loss = F.cross_entropy(probe(x.flatten(1)), y, reduction="none")
            for i in layer_indices:
                increase = _ablation_increase(
                    stages[i + 1:], probe, activations[i], labels=y, base_loss=base_loss,
                    ablations_per_forward=ablations_per_forward)
                totals[i] = totals[i] + increase if i in totals else increase
                bar.update()
    return _attention_frame(totals, layer_indices, layer_names, len(inputs), temperature)


def _attention_frame(
    totals: Mapping[int, Tensor], layer_indices: Sequence[int], layer_names: Sequence[str],
    n_samples: int, temperature: float,
) -> pd.DataFrame:
    frames = []
    for i, name in zip(layer_indices, layer_names, strict=True):
        increase = (totals[i] / n_samples).double().cpu()
        frames.append(pd.DataFrame({
            "layer": name,
            "channel": range(len(increase)),
            "loss_increase": increase.numpy(),
            "weight": _softmax_of_zscores(increase, temperature).numpy(),
        }))
    return pd.concat(frames, ignore_index=True)


def attention_from_frame(frame: pd.DataFrame) -> dict[str, Tensor]:
    """Turn :func:`delta_channel_attention`'s table back into ``{layer: weights [C]}``."""
    missing = {"layer", "channel", "weight"} - set(frame.columns)
    if missing:
        raise ValueError(f"attention table lacks column(s) {sorted(missing)}.")
    attention = {}
    for layer, group in frame.groupby("layer", sort=False):
        rows = group.sort_values("channel")
        if list(rows["channel"]) != list(range(len(rows))):
            raise ValueError(f"attention table: channels of layer {layer!r} are not 0..C-1.")
        attention[str(layer)] = torch.tensor(rows["weight"].to_numpy(), dtype=torch.float32)
    return attention


def trainable_blocks(model: nn.Module) -> list[str]:
    """Blocks with at least one trainable parameter (where DELTA's feature maps can move)."""
    layout = model.backbone_cfg.layout
    return [b for b in layout.blocks
            if any(p.requires_grad for p in model.get_submodule(b).parameters())]


def check_delta_can_train(model: nn.Module, regularizer: dict) -> None:
    """DELTA keeps the feature maps of the blocks being fine-tuned near the pretrained ones; when
    only the head trains (``head_only``) no map can move, so refuse rather than fail mid-epoch."""
    if regularizer.get("name") != "delta" or trainable_blocks(model):
        return
    raise ValueError(
        "finetune.regularizer.name='delta' needs trainable backbone blocks: DELTA regularises "
        "the feature maps of the blocks being fine-tuned, but this plan trains only the "
        "classifier head (no block is trainable). Fix: finetune.regularizer.name: l2 (or none) "
        "for head-only training, or a strategy that trains blocks (strategy.override: "
        "partial_finetune)."
    )


def delta_layers(model: nn.Module) -> list[str]:
    return trainable_blocks(model) or list(model.backbone_cfg.layout.blocks[-1:])


def delta_attention(model: nn.Module, data: ImageData, seed: int = 0,
                    progress: bool = True) -> pd.DataFrame:
    """DELTA channel weights on the frozen (pretrained) network: probe, then channel ablation."""
    cfg = model.backbone_cfg
    names, stages = zip(*pooled_stages(model), strict=True)
    layers = delta_layers(model)
    inputs = normalise(data.images, cfg.mean, cfg.std)
    features = stage_features(stages, inputs)
    num_classes = int(data.labels.max()) + 1
    probe = train_linear_probe(features, data.labels, num_classes, seed=seed)
    return delta_channel_attention(list(stages), [names.index(n) for n in layers], layers, probe,
                                   inputs, data.labels, progress=progress)
