"""Target-aware channel importance (TransTailor, Liu et al. AAAI 2021).

A learnable scale alpha (one per channel) multiplies the output of every gated BatchNorm layer;
with all pretrained weights frozen, only the alphas are trained on the target task. Each channel
is then scored by the first-order Taylor term ``|alpha * dL/dalpha|``, averaged over all batches
(not only the last one), normalised per layer by the l2 norm, summed over channels coupled by a
residual add or depthwise conv (one torch-pruning dependency group), and ranked globally.
L1-filter-norm and random scores give baselines with the same table shape.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterable, Iterator, Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ft_pipelines.core.pruning import (
    GATED_ATTRIBUTE,
    build_dependency_graph,
    group_members,
    iter_prunable_groups,
    prunable_bn_layers,
)

logger = logging.getLogger(__name__)

Batches = Iterable[tuple[Tensor, Tensor]]


class ChannelGates:
    """One learnable per-channel scale (init 1.0) after each gated BatchNorm2d layer.

    Forward hooks replace each layer's output ``out`` by ``out * alpha.view(1, -1, 1, 1)``.
    For timm's ``BatchNormAct2d`` the hooked output already went through its activation, so
    the gate sits after BN + activation there (after plain BN elsewhere). The model's own
    weights are never touched. Use as a context manager or call :meth:`remove` when done.
    """

    def __init__(
        self,
        model: nn.Module,
        layer_names: list[str] | None = None,
        ignored: Sequence[str] = (),
    ) -> None:
        names = prunable_bn_layers(model, ignored) if layer_names is None else list(layer_names)
        modules = dict(model.named_modules())
        for name in names:
            if not isinstance(modules.get(name), nn.BatchNorm2d):
                raise ValueError(
                    f"Gate layer {name!r} is not a BatchNorm2d of the model; pick names from "
                    "prunable_bn_layers(model)."
                )
        if not names:
            raise ValueError("No BatchNorm2d layer to gate: the model has none or all are ignored.")
        self.model = model
        self.layer_names = names
        self._alphas: dict[str, nn.Parameter] = {}
        self._handles = []
        for name in names:
            module = modules[name]
            reference = next(iter(module.buffers()), None)
            device = reference.device if reference is not None else None
            self._alphas[name] = nn.Parameter(torch.ones(module.num_features, device=device))
            self._handles.append(module.register_forward_hook(self._gate_hook(name)))
            setattr(module, GATED_ATTRIBUTE, True)  # lets pruning refuse a gated model

    def _gate_hook(self, name: str):
        def hook(module: nn.Module, inputs: tuple, output: Tensor) -> Tensor:
            return output * self._alphas[name].view(1, -1, 1, 1)

        return hook

    def parameters(self) -> Iterator[nn.Parameter]:
        """The gate scales, one Parameter per layer (in ``layer_names`` order)."""
        return iter(self._alphas.values())

    def named_parameters(self) -> Iterator[tuple[str, nn.Parameter]]:
        return iter(self._alphas.items())

    def scales(self) -> dict[str, Tensor]:
        """Detached CPU copies of the current scales, by layer name."""
        return {name: alpha.detach().cpu().clone() for name, alpha in self._alphas.items()}

    def to(self, device: torch.device | str) -> ChannelGates:
        """Move the scales in place (same Parameter objects, so hooks keep working)."""
        for alpha in self._alphas.values():
            alpha.data = alpha.data.to(device)
        return self

    @property
    def attached(self) -> bool:
        return bool(self._handles)

    def remove(self) -> None:
        """Detach the hooks; the model behaves as before the gates. Safe to call twice."""
        for handle in self._handles:
            handle.remove()
        self._handles = []
        modules = dict(self.model.named_modules())
        for name in self.layer_names:
            if hasattr(modules.get(name), GATED_ATTRIBUTE):
                delattr(modules[name], GATED_ATTRIBUTE)

    def __enter__(self) -> ChannelGates:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.remove()


@contextlib.contextmanager
def frozen_eval(model: nn.Module) -> Iterator[None]:
    """Freeze every weight and put every module in eval mode; restore both on exit.

    Eval mode keeps BN running statistics fixed and turns dropout / drop-path off.
    """
    requires_grad = {param: param.requires_grad for param in model.parameters()}
    modes = {module: module.training for module in model.modules()}
    try:
        for param in requires_grad:
            param.requires_grad_(False)
        model.eval()
        yield
    finally:
        for param, flag in requires_grad.items():
            param.requires_grad_(flag)
        for module, training in modes.items():
            module.train(training)


def _check_gates(model: nn.Module, gates: ChannelGates) -> None:
    if gates.model is not model or not gates.attached:
        raise ValueError(
            "ChannelGates are not attached to this model: create ChannelGates(model) and do not "
            "remove() them before training or scoring."
        )


def train_gates(  # noqa: PLR0917 (signature shared with the pipeline nodes)
    model: nn.Module,
    gates: ChannelGates,
    batches: Batches,
    epochs: int,
    lr: float,
    device: torch.device | str,
    progress: bool = False,
) -> list[float]:
    """Train only the gate scales (Adam, cross-entropy) with the model frozen in eval mode.

    ``batches`` is re-iterated once per epoch. Returns the mean loss per sample of each epoch.
    """
    _check_gates(model, gates)
    if epochs < 1:
        raise ValueError(f"Gate training epochs must be >= 1, got {epochs}.")
    model.to(device)
    gates.to(device)
    optimizer = torch.optim.Adam(gates.parameters(), lr=lr)
    epoch_losses: list[float] = []
    with frozen_eval(model):
        for epoch in _maybe_tqdm(range(epochs), progress, "gate epochs"):
            loss_sum, n_samples = 0.0, 0
            for inputs, targets in batches:
                loss = F.cross_entropy(model(inputs.to(device)), targets.to(device))
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                loss_sum += loss.item() * len(targets)
                n_samples += len(targets)
            if n_samples == 0:
                raise ValueError("Gate training got no batches: 'batches' is empty or exhausted.")
            epoch_losses.append(loss_sum / n_samples)
            logger.info("Gate epoch %d: loss %.4f", epoch + 1, epoch_losses[-1])
    return epoch_losses


def _maybe_tqdm(iterable: Iterable, progress: bool, desc: str) -> Iterable:
    if not progress:
        return iterable
    from tqdm.auto import tqdm

    return tqdm(iterable, desc=desc)


def taylor_scores(
    model: nn.Module, gates: ChannelGates, batches: Batches, device: torch.device | str
) -> dict[str, Tensor]:
    """Per-channel ``|alpha * dL/dalpha|``, computed per batch and averaged over all batches.

    L is the batch-mean cross-entropy; the model is frozen in eval mode meanwhile.
    """
    _check_gates(model, gates)
    model.to(device)
    gates.to(device)
    names, alphas = zip(*gates.named_parameters(), strict=True)
    totals = [torch.zeros_like(alpha, dtype=torch.float64) for alpha in alphas]
    n_batches = 0
    with frozen_eval(model):
        for inputs, targets in batches:
            loss = F.cross_entropy(model(inputs.to(device)), targets.to(device))
            grads = torch.autograd.grad(loss, alphas)
            for total, alpha, grad in zip(totals, alphas, grads, strict=True):
                total.add_((alpha.detach() * grad).abs().double())
            n_batches += 1
    if n_batches == 0:
        raise ValueError("Taylor scoring got no batches: 'batches' is empty or exhausted.")
    return {
        name: (total / n_batches).float().cpu() for name, total in zip(names, totals, strict=True)
    }


def channel_groups(
    model: nn.Module,
    example_inputs: Tensor,
    layer_names: list[str],
    ignored_layers: Sequence[nn.Module] = (),
) -> dict[str, np.ndarray]:
    """Group id of every channel of every named BN layer, from torch-pruning's dependency graph.

    Channels that are pruned together (same dependency group, same root index: residual adds,
    depthwise convs) share an id. Channels that cannot be pruned (their group contains an
    ignored layer's output channels) get -1. Remove gates first or keep them: tracing works
    either way.
    """
    modules = dict(model.named_modules())
    unknown = [name for name in layer_names if not isinstance(modules.get(name), nn.BatchNorm2d)]
    if unknown:
        raise ValueError(f"Layers {unknown} are not BatchNorm2d modules of the model.")
    wanted = {modules[name]: name for name in layer_names}
    ids = {name: np.full(modules[name].num_features, -1, dtype=np.int64) for name in layer_names}
    graph = build_dependency_graph(model, example_inputs)
    next_id = 0
    for group in iter_prunable_groups(graph, ignored_layers):
        for module, idxs, root_idxs in group_members(group, wanted):
            ids[wanted[module]][idxs] = next_id + np.asarray(root_idxs, dtype=np.int64)
        next_id += len(group[0].idxs)
    return ids


def importance_table(
    scores: dict[str, Tensor],
    scales: dict[str, Tensor] | None,
    groups: dict[str, np.ndarray],
) -> pd.DataFrame:
    """One row per (layer, channel) with raw, layer-normalised and group scores and global rank.

    ``norm_score`` = raw / l2-norm of the layer's raw scores; ``group_score`` = sum of
    ``norm_score`` over the channel's group; ``global_rank`` orders prunable channels by
    ``group_score`` (0 = least important, ties kept in row order). Channels of group -1 (not
    prunable) keep ``group_score = norm_score`` and a missing (<NA>) ``global_rank``.
    """
    frames = [_layer_rows(layer, raw, scales, groups) for layer, raw in scores.items()]
    if not frames:
        raise ValueError("No scores given: the importance table would be empty.")
    table = pd.concat(frames, ignore_index=True)
    prunable = table["group"] >= 0
    table["group_score"] = table["norm_score"]
    table.loc[prunable, "group_score"] = (
        table.loc[prunable].groupby("group")["norm_score"].transform("sum")
    )
    ranked = table.loc[prunable, "group_score"].sort_values(kind="stable").index
    rank = pd.Series(pd.NA, index=table.index, dtype="Int64")
    rank[ranked] = np.arange(len(ranked))
    table["global_rank"] = rank
    return table


def _layer_rows(
    layer: str,
    raw: Tensor,
    scales: dict[str, Tensor] | None,
    groups: dict[str, np.ndarray],
) -> pd.DataFrame:
    raw_np = raw.detach().cpu().double().numpy().reshape(-1)
    if layer not in groups or len(groups[layer]) != len(raw_np):
        raise ValueError(
            f"No channel groups of matching length for layer {layer!r}: compute groups with "
            "channel_groups() for the same layers and model."
        )
    norm = float(np.linalg.norm(raw_np))
    scale = np.full(len(raw_np), np.nan)
    if scales is not None and layer in scales:
        scale = scales[layer].detach().cpu().double().numpy().reshape(-1)
    return pd.DataFrame(
        {
            "layer": layer,
            "channel": np.arange(len(raw_np)),
            "group": np.asarray(groups[layer], dtype=np.int64),
            "scale": scale,
            "raw_score": raw_np,
            "norm_score": raw_np / norm if norm > 0 else np.zeros_like(raw_np),
        }
    )


def feeding_convs(model: nn.Module) -> dict[str, nn.Conv2d]:
    """BN name -> the Conv2d registered just before it with as many output channels.

    Registration order matches data flow in torchvision and timm CNNs (conv, then its BN).
    """
    feeding: dict[str, nn.Conv2d] = {}
    last_conv: nn.Conv2d | None = None
    for name, module in model.named_modules():
        if isinstance(module, nn.Conv2d):
            last_conv = module
        elif isinstance(module, nn.BatchNorm2d):
            if last_conv is not None and last_conv.out_channels == module.num_features:
                feeding[name] = last_conv
    return feeding


def l1_scores(model: nn.Module, layer_names: list[str] | None = None) -> dict[str, Tensor]:
    """L1 norm of each output filter of the conv feeding each BN layer (baseline).

    A BN with no identifiable feeding conv falls back to ``|gamma|`` (logged).
    """
    modules = dict(model.named_modules())
    names = prunable_bn_layers(model) if layer_names is None else layer_names
    feeding = feeding_convs(model)
    scores: dict[str, Tensor] = {}
    for name in names:
        if name in feeding:
            weight = feeding[name].weight.detach()
            scores[name] = weight.abs().sum(dim=tuple(range(1, weight.dim()))).cpu()
        elif getattr(modules.get(name), "weight", None) is not None:
            logger.warning("No conv found feeding %s: scoring its channels by |gamma|", name)
            scores[name] = modules[name].weight.detach().abs().cpu()
        else:
            raise ValueError(f"Cannot L1-score layer {name!r}: no feeding conv and no BN weight.")
    return scores


def random_scores(
    model: nn.Module, layer_names: list[str] | None = None, seed: int = 0
) -> dict[str, Tensor]:
    """Uniform random channel scores (baseline), reproducible from ``seed``."""
    modules = dict(model.named_modules())
    names = prunable_bn_layers(model) if layer_names is None else layer_names
    generator = torch.Generator().manual_seed(seed)
    return {name: torch.rand(modules[name].num_features, generator=generator) for name in names}
