"""Target-aware channel importance (TransTailor, Liu et al. AAAI 2021; docs/references.md).

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

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ft_pipelines.core.pruning.graph import GATED_ATTRIBUTE, prunable_bn_layers
from ft_pipelines.core.training import all_reduce_sum, all_reduce_tensors, rank_slice, world
from ft_pipelines.core.utils import Runtime, preserved_modes

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
    try:
        model.requires_grad_(False)
        with preserved_modes(model, training=False):
            yield
    finally:
        for param, flag in requires_grad.items():
            param.requires_grad_(flag)


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
    In a process group every rank gets the same batches and takes its slice of each; the summed
    gate gradients are the whole batch's, so N ranks train the scales 1 process would.
    """
    _check_gates(model, gates)
    if epochs < 1:
        raise ValueError(f"Gate training epochs must be >= 1, got {epochs}.")
    runtime = _placed(model, gates, device)
    alphas = list(gates.parameters())
    optimizer = torch.optim.Adam(alphas, lr=lr)
    epoch_losses: list[float] = []
    with frozen_eval(model):
        for epoch in _maybe_tqdm(range(epochs), progress, "gate epochs"):
            loss_sum, n_samples = 0.0, 0
            for inputs, targets in batches:
                loss = _batch_loss_share(model, runtime, inputs, targets)
                optimizer.zero_grad()
                loss.backward()
                all_reduce_tensors([alpha.grad for alpha in alphas])
                optimizer.step()
                loss_sum += loss.item() * len(targets)
                n_samples += len(targets)
            if n_samples == 0:
                raise ValueError("Gate training got no batches: 'batches' is empty or exhausted.")
            loss_sum = all_reduce_sum([loss_sum], runtime.device)[0]
            epoch_losses.append(loss_sum / n_samples)
            logger.info("Gate epoch %d: loss %.4f", epoch + 1, epoch_losses[-1])
    return epoch_losses


def _batch_loss_share(model: nn.Module, runtime: Runtime, inputs: Tensor, targets: Tensor
                     ) -> Tensor:
    """This rank's part of the batch-mean cross-entropy (all of it in a single process): summed
    over the ranks, the losses and their gradients are those of the whole batch."""
    rank, world_size = world()
    if world_size == 1:
        return F.cross_entropy(model(runtime.to_device(inputs)), runtime.to_device(targets))
    part, weight = rank_slice(torch.arange(len(targets)), rank, world_size)
    logits = model(runtime.to_device(inputs[part]))
    summed = F.cross_entropy(logits, runtime.to_device(targets[part]), reduction="sum")
    return summed * (weight / world_size)  # weight / world_size = 1 / len(whole batch)


def _placed(model: nn.Module, gates: ChannelGates, device: torch.device | str) -> Runtime:
    """Model and gates on ``device``, the model in the layout the training loops use."""
    runtime = Runtime(torch.device(device), "fp32")
    runtime.prepare(model)
    gates.to(runtime.device)
    return runtime


def _maybe_tqdm(iterable: Iterable, progress: bool, desc: str) -> Iterable:
    if not progress:
        return iterable
    from tqdm.auto import tqdm

    return tqdm(iterable, desc=desc)


def taylor_scores(
    model: nn.Module, gates: ChannelGates, batches: Batches, device: torch.device | str
) -> dict[str, Tensor]:
    """Per-channel ``|alpha * dL/dalpha|``, computed per batch and averaged over all batches.

    L is the batch-mean cross-entropy; the model is frozen in eval mode meanwhile. In a process
    group each rank differentiates its slice of the batch and the gradients are summed before
    the absolute value is taken, so every rank gets the single-process scores.
    """
    _check_gates(model, gates)
    runtime = _placed(model, gates, device)
    names, alphas = zip(*gates.named_parameters(), strict=True)
    totals = [torch.zeros_like(alpha, dtype=torch.float64) for alpha in alphas]
    n_batches = 0
    with frozen_eval(model):
        for inputs, targets in batches:
            grads = list(torch.autograd.grad(_batch_loss_share(model, runtime, inputs, targets),
                                             alphas))
            all_reduce_tensors(grads)
            for total, alpha, grad in zip(totals, alphas, grads, strict=True):
                total.add_((alpha.detach() * grad).abs().double())
            n_batches += 1
    if n_batches == 0:
        raise ValueError("Taylor scoring got no batches: 'batches' is empty or exhausted.")
    return {
        name: (total / n_batches).float().cpu() for name, total in zip(names, totals, strict=True)
    }
