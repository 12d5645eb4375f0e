"""Regularizers for fine-tuning from a pretrained network: L2, L2-SP, DELTA and BSS.

Every regularizer follows the :class:`Regularizer` protocol the training loop relies on:
``attach(model)`` once before training (registers hooks), ``penalty(model, inputs)`` after each
forward pass on ``inputs`` (a scalar added to the task loss), ``detach()`` after training, and
``decay_exempt()`` for the parameter names the optimizer must not weight-decay.
Formulas and published settings: ``references.md``, "Regularized fine-tuning".

DELTA's channel attention is computed with :func:`train_linear_probe` (a probe on frozen,
precomputed features) and :func:`delta_channel_attention` (channel ablation from cached
activations, several ablations batched into one forward pass).
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import logging
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

import pandas as pd
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.hooks import RemovableHandle
from tqdm.auto import tqdm

logger = logging.getLogger(__name__)

#: Where the regularizer settings live in the Kedro parameters (used in error messages).
PARAMS_PATH = "finetune.regularizer"
#: Names accepted by :func:`build_regularizer`.
REGULARIZER_NAMES = ("none", "l2", "l2_sp", "delta")

_KERNEL_MODULES = (nn.modules.conv._ConvNd, nn.Linear)
_NORM_MODULES = (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm)


@runtime_checkable
class Regularizer(Protocol):
    """What the training loop needs from a regularizer."""

    name: str
    #: True when ``penalty`` needs the network's real inputs (images): the loop must then not
    #: feed the model cached activations of a frozen prefix instead.
    needs_inputs: bool

    def attach(self, model: nn.Module) -> None:
        """Register hooks if needed (called once before training)."""

    def detach(self) -> None:
        """Remove the hooks registered by ``attach``."""

    def penalty(self, model: nn.Module, inputs: Tensor) -> Tensor:
        """Scalar penalty for the batch ``inputs``; called after the model's forward on it."""

    def decay_exempt(self) -> set[str]:
        """Parameter names the optimizer must not weight-decay."""


# --------------------------------------------------------------------------- helpers


def kernel_parameter_names(model: nn.Module, include_norm: bool = False) -> list[str]:
    """Names of conv/linear kernels (``<module>.weight``), plus norm-layer affine parameters
    (weight and bias) when ``include_norm``. Trainability is not checked here."""
    names = []
    for module_name, module in model.named_modules():
        if isinstance(module, _KERNEL_MODULES):
            attrs = ("weight",)
        elif include_norm and isinstance(module, _NORM_MODULES):
            attrs = ("weight", "bias")
        else:
            continue
        prefix = f"{module_name}." if module_name else ""
        names += [prefix + a for a in attrs if module._parameters.get(a) is not None]
    return names


def _trainable(model: nn.Module, names: Iterable[str], what: str) -> list[Tensor]:
    """The named parameters of ``model`` that currently require grad.

    Checked at every call, so weights unfrozen later (e.g. LP-FT's second phase) are included.
    """
    params = dict(model.named_parameters())
    missing = [n for n in names if n not in params]
    if missing:
        raise ValueError(
            f"{what}: the model has no parameter(s) {missing[:5]}; build the regularizer for "
            "this model (after any surgery or pruning)."
        )
    return [params[n] for n in names if params[n].requires_grad]


def _sum_of_squares(tensors: Sequence[Tensor], device: torch.device) -> Tensor:
    if not tensors:
        return torch.zeros((), device=device)
    return torch.stack([t.pow(2).sum() for t in tensors]).sum()


def _submodule(model: nn.Module, name: str, param: str) -> nn.Module:
    try:
        return model.get_submodule(name)
    except AttributeError:
        examples = [n for n, _ in model.named_children()][:8]
        raise ValueError(
            f"{param}: the model has no module named {name!r}; use a dotted name from "
            f"model.named_modules() (top-level modules: {examples})."
        ) from None


def _check_non_negative(**values: float) -> None:
    for key, value in values.items():
        if value < 0:
            raise ValueError(f"{key} must be >= 0, got {value}.")


def _check_batch(captured: Tensor | None, inputs: Tensor, who: str, what: str) -> Tensor:
    """Catch a penalty called without attach/forward, or on features of another batch."""
    if captured is None:
        raise RuntimeError(f"{who}: no {what} captured; call attach(model) and run the forward "
                           "pass on `inputs` before penalty().")
    if captured.shape[0] != inputs.shape[0]:
        raise RuntimeError(f"{who}: captured {what} have batch size {captured.shape[0]} but "
                           f"inputs have {inputs.shape[0]}; call penalty() right after the "
                           "forward pass on the same inputs.")
    return captured


def _new_parameter_names(
    model: nn.Module, reference_shapes: Mapping[str, torch.Size], forced: Iterable[str]
) -> list[str]:
    """Kernels with no same-named, same-shaped counterpart in the reference, plus ``forced``."""
    forced = list(forced)
    params = dict(model.named_parameters())
    unknown = [n for n in forced if n not in params]
    if unknown:
        raise ValueError(f"new_param_names: the model has no parameter(s) {unknown}.")
    new = [
        n for n in kernel_parameter_names(model)
        if n in forced or tuple(reference_shapes.get(n, ())) != tuple(params[n].shape)
    ]
    return new + [n for n in forced if n not in new]


# --------------------------------------------------------------------------- L2 / L2-SP


class L2Penalty:
    """``beta/2 * sum ||w||^2`` over the trainable conv/linear kernels (or ``param_names``)."""

    name = "l2"
    needs_inputs = False

    def __init__(
        self, model: nn.Module, beta: float, param_names: Iterable[str] | None = None
    ) -> None:
        _check_non_negative(beta=beta)
        self.beta = float(beta)
        self.param_names = (
            list(param_names) if param_names is not None else kernel_parameter_names(model)
        )
        _trainable(model, self.param_names, "L2Penalty")  # fail now on a bad name

    def attach(self, model: nn.Module) -> None:
        """Nothing to hook."""

    def detach(self) -> None:
        """Nothing to unhook."""

    def penalty(self, model: nn.Module, inputs: Tensor) -> Tensor:
        """``beta/2 * sum ||w||^2`` over the selected weights that require grad."""
        weights = _trainable(model, self.param_names, "L2Penalty")
        return self.beta / 2 * _sum_of_squares(weights, inputs.device)

    def decay_exempt(self) -> set[str]:
        """Empty: this penalty pulls toward zero, like weight decay, so there is no conflict."""
        return set()


class L2SP:
    """L2-SP (Li et al. 2018): ``alpha/2 * sum_shared ||w - w0||^2 + beta/2 * sum_new ||w||^2``.

    Shared: conv/linear kernels (and norm affine weight/bias if ``anchor_bn``) found in
    ``anchor`` with the same shape. New: kernels absent from ``anchor`` or shape-mismatched (the
    new head), plus ``new_param_names``. Biases are not penalised. ``channel_strength[name]``
    (shape ``[out_channels]``) scales each output channel's squared distance, e.g. in proportion
    to channel importance after pruning. Only weights that require grad at penalty time count.
    """

    name = "l2_sp"
    needs_inputs = False

    def __init__(
        self,
        model: nn.Module,
        anchor: Mapping[str, Tensor],
        alpha: float = 0.1,
        beta: float = 0.01,
        *,
        new_param_names: set[str] | None = None,
        anchor_bn: bool = False,
        channel_strength: Mapping[str, Tensor] | None = None,
    ) -> None:
        _check_non_negative(alpha=alpha, beta=beta)
        self.alpha, self.beta = float(alpha), float(beta)
        shapes = {k: v.shape for k, v in anchor.items()}
        self.new_names = _new_parameter_names(model, shapes, new_param_names or ())
        params = dict(model.named_parameters())
        # Clones: the anchor must not share storage with weights an optimizer will move.
        self.anchor: dict[str, Tensor] = {
            n: anchor[n].detach().clone()
            for n in kernel_parameter_names(model, include_norm=anchor_bn)
            if n not in self.new_names and n in anchor and anchor[n].shape == params[n].shape
        }
        if not self.anchor:
            logger.warning("L2-SP: no parameter of the model matches the anchor by name and "
                           "shape; only the new-parameter term will apply.")
        self.channel_strength = self._checked_strength(channel_strength or {})
        logger.info("L2-SP: %d anchored tensors, %d new", len(self.anchor), len(self.new_names))

    def _checked_strength(self, strength: Mapping[str, Tensor]) -> dict[str, Tensor]:
        checked = {}
        for name, given in strength.items():
            if name not in self.anchor:
                raise ValueError(f"channel_strength: {name!r} is not an anchored parameter; "
                                 f"anchored: {sorted(self.anchor)[:8]}...")
            values = torch.as_tensor(given).detach().clone().float().flatten()
            if values.numel() != self.anchor[name].shape[0]:
                raise ValueError(f"channel_strength[{name!r}] has {values.numel()} values but "
                                 f"the weight has {self.anchor[name].shape[0]} output channels.")
            checked[name] = values
        return checked

    def attach(self, model: nn.Module) -> None:
        """Nothing to hook."""

    def detach(self) -> None:
        """Nothing to unhook."""

    def _distance(self, name: str, weight: Tensor) -> Tensor:
        anchor = self.anchor[name]
        if anchor.shape != weight.shape:
            raise ValueError(f"L2-SP: {name!r} has shape {tuple(weight.shape)} but its anchor "
                             f"{tuple(anchor.shape)}; rebuild the regularizer after pruning.")
        if anchor.device != weight.device or anchor.dtype != weight.dtype:
            anchor = self.anchor[name] = anchor.to(weight.device, weight.dtype)  # move once
        squared = (weight - anchor).pow(2)
        strength = self.channel_strength.get(name)
        if strength is None:
            return squared.sum()
        strength = self.channel_strength[name] = strength.to(weight.device, weight.dtype)
        return (squared.reshape(squared.shape[0], -1).sum(dim=1) * strength).sum()

    def penalty(self, model: nn.Module, inputs: Tensor) -> Tensor:
        """Weighted distance of shared weights to the anchor plus the L2 of the new ones."""
        params = dict(model.named_parameters())
        shared = [
            self._distance(n, params[n])
            for n in self.anchor
            if n in params and params[n].requires_grad
        ]
        shared_term = torch.stack(shared).sum() if shared else torch.zeros((), device=inputs.device)
        new_term = _sum_of_squares(_trainable(model, self.new_names, "L2-SP"), inputs.device)
        return self.alpha / 2 * shared_term + self.beta / 2 * new_term

    def decay_exempt(self) -> set[str]:
        """The anchored names: weight decay would pull them to zero, against the anchor."""
        return set(self.anchor)


# --------------------------------------------------------------------------- DELTA


def _capture_output(store: dict[str, Tensor], name: str) -> Callable[..., None]:
    def hook(module: nn.Module, args: Any, output: Any) -> None:
        if not isinstance(output, Tensor):
            raise TypeError(f"DELTA: module {name!r} returns {type(output).__name__}, not a "
                            "tensor; hook a module whose output is a feature map.")
        # Clone: a following in-place op (ReLU(inplace=True)) would otherwise change it.
        store[name] = output.clone()

    return hook


def _input_fingerprint(inputs: Tensor) -> str:
    raw = inputs.detach().contiguous().reshape(-1).view(torch.uint8).cpu().numpy()
    digest = hashlib.blake2b(raw.tobytes(), digest_size=16).hexdigest()
    return f"{tuple(inputs.shape)}:{inputs.dtype}:{digest}"


class DELTA:
    """DELTA (Li et al. 2019): feature maps of the model pulled toward a frozen reference's.

    ``alpha * mean_b( sum_j sum_c W_jc * mean_hw (FM_jc - FM0_jc)^2 ) + beta/2 * ||w_new||^2``
    with FM taken at the outputs of the modules ``layer_names`` (same names in both networks).
    ``attention[name]`` holds ``W_j`` (``[C]``, see :func:`delta_channel_attention`); None means
    ``1/C``. The reference is deep-copied (the caller's module is left untouched, e.g. when
    models are handed between nodes by reference), frozen and kept in eval mode.
    Reference maps can be supplied with ``penalty(..., reference_maps=...)`` (see
    :meth:`compute_reference_maps`), or, with ``cached_reference=True``, are cached per distinct
    input batch (exact content hash) — only useful when inputs repeat exactly (no random
    augmentation); the cache grows with the number of distinct batches.
    """

    name = "delta"

    def __init__(
        self,
        reference: nn.Module,
        layer_names: Sequence[str],
        attention: Mapping[str, Tensor] | None = None,
        alpha: float = 0.01,
        beta: float = 0.01,
        *,
        new_param_names: Iterable[str] | None = None,
        cached_reference: bool = False,
    ) -> None:
        if not layer_names:
            raise ValueError(f"DELTA needs at least one layer name ({PARAMS_PATH}.layer_names).")
        _check_non_negative(alpha=alpha, beta=beta)
        self.layer_names = list(layer_names)
        self.alpha, self.beta = float(alpha), float(beta)
        self.forced_new = list(new_param_names or ())
        self.cached_reference = cached_reference
        self.reference = copy.deepcopy(reference).eval().requires_grad_(False)
        self._reference_store: dict[str, Tensor] = {}
        for name in self.layer_names:
            module = _submodule(self.reference, name, "DELTA reference layer_names")
            module.register_forward_hook(_capture_output(self._reference_store, name))
        self.attention = self._checked_attention(attention)
        self._model_store: dict[str, Tensor] = {}
        self._handles: list[RemovableHandle] = []
        self._cache: dict[str, dict[str, Tensor]] = {}
        self._sample_maps: dict[str, Tensor] = {}
        self._selected: Tensor | None = None
        self.new_names: list[str] = []
        self.shared_names: list[str] = []

    @property
    def needs_inputs(self) -> bool:
        """False once per-sample reference maps are precomputed (then the images are not needed)."""
        return not self._sample_maps

    def precompute_reference(self, inputs: Tensor, batch_size: int = 128,
                             max_bytes: int = 2 * 1024**3) -> bool:
        """Reference maps for every sample of a fixed (non-augmented) training set, kept on CPU.

        Afterwards call :meth:`select` with each batch's sample indices. Returns False (and keeps
        running the reference per batch) when the maps would take more than ``max_bytes``.
        """
        first = self.compute_reference_maps(inputs[:1])
        per_sample = sum(m[0].numel() * m.element_size() for m in first.values())
        if per_sample * len(inputs) > max_bytes:
            logger.info("DELTA reference maps would need %.1f GB: computed per batch instead",
                        per_sample * len(inputs) / 1024**3)
            return False
        chunks = [self.compute_reference_maps(inputs[i:i + batch_size])
                  for i in range(0, len(inputs), batch_size)]
        self._sample_maps = {n: torch.cat([c[n].cpu() for c in chunks]) for n in self.layer_names}
        return True

    def select(self, sample_indices: Tensor) -> None:
        """Which precomputed samples the next ``penalty`` call is about."""
        self._selected = sample_indices

    def _checked_attention(self, attention: Mapping[str, Tensor] | None) -> dict[str, Tensor]:
        if attention is None:
            return {}
        missing = [n for n in self.layer_names if n not in attention]
        if missing:
            raise ValueError(f"DELTA attention has no weights for layer(s) {missing}; compute "
                             "it for the same layer names (delta_channel_attention).")
        return {n: torch.as_tensor(attention[n]).detach().clone().float().flatten()
                for n in self.layer_names}

    def attach(self, model: nn.Module) -> None:
        """Hook the model's ``layer_names`` outputs and sort its kernels into shared / new."""
        self.detach()
        for name in self.layer_names:
            module = _submodule(model, name, f"{PARAMS_PATH}.layer_names")
            self._handles.append(
                module.register_forward_hook(_capture_output(self._model_store, name))
            )
        shapes = {n: p.shape for n, p in self.reference.named_parameters()}
        self.new_names = _new_parameter_names(model, shapes, self.forced_new)
        self.shared_names = [n for n in kernel_parameter_names(model) if n not in self.new_names]

    def detach(self) -> None:
        """Remove the model hooks and drop captured maps."""
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        self._model_store.clear()

    def compute_reference_maps(self, inputs: Tensor) -> dict[str, Tensor]:
        """Run the frozen reference on ``inputs``; its feature maps by layer name (no grad)."""
        key = _input_fingerprint(inputs) if self.cached_reference else None
        if key is not None and key in self._cache:
            return self._cache[key]
        first = next(self.reference.parameters(), None)
        if first is not None and first.device != inputs.device:
            self.reference.to(inputs.device)
        self.reference.eval()
        with torch.no_grad():
            self.reference(inputs)
        maps = {n: self._reference_store.pop(n) for n in self.layer_names}
        if key is not None:
            self._cache[key] = maps
        return maps

    def clear_cache(self) -> None:
        """Forget cached reference maps."""
        self._cache.clear()

    def _attention_weights(self, name: str, channels: int, like: Tensor) -> Tensor:
        weights = self.attention.get(name)
        if weights is None:
            return torch.full((channels,), 1.0 / channels, device=like.device, dtype=like.dtype)
        if weights.numel() != channels:
            raise ValueError(f"DELTA attention for {name!r} has {weights.numel()} weights but "
                             f"the feature map has {channels} channels.")
        if weights.device != like.device or weights.dtype != like.dtype:
            weights = self.attention[name] = weights.to(like.device, like.dtype)
        return weights

    def feature_map_distance(
        self, model_maps: Mapping[str, Tensor], reference_maps: Mapping[str, Tensor]
    ) -> Tensor:
        """``mean_b sum_j sum_c W_jc * mean_hw (FM - FM0)^2`` (without alpha)."""
        per_sample = None
        for name in self.layer_names:
            fm = model_maps[name]
            if name not in reference_maps:
                raise ValueError(f"DELTA: reference maps lack layer {name!r}.")
            fm0 = reference_maps[name].to(fm.device, fm.dtype)
            if fm0.shape != fm.shape:
                raise ValueError(f"DELTA: feature map {name!r} has shape {tuple(fm.shape)} in "
                                 f"the model but {tuple(fm0.shape)} in the reference.")
            squared = (fm - fm0).pow(2).reshape(fm.shape[0], fm.shape[1], -1).mean(dim=2)
            term = squared @ self._attention_weights(name, fm.shape[1], squared)
            per_sample = term if per_sample is None else per_sample + term
        return per_sample.mean()

    def penalty(
        self,
        model: nn.Module,
        inputs: Tensor,
        reference_maps: Mapping[str, Tensor] | None = None,
    ) -> Tensor:
        """DELTA penalty for the batch whose forward pass just ran on ``model``."""
        model_maps = {
            n: _check_batch(self._model_store.get(n), inputs, "DELTA", f"feature maps {n!r}")
            for n in self.layer_names
        }
        if reference_maps is None and self._sample_maps and self._selected is not None:
            reference_maps = {n: m[self._selected] for n, m in self._sample_maps.items()}
        if reference_maps is None:
            reference_maps = self.compute_reference_maps(inputs)
        distance = self.feature_map_distance(model_maps, reference_maps)
        new_term = _sum_of_squares(_trainable(model, self.new_names, "DELTA"), inputs.device)
        return self.alpha * distance + self.beta / 2 * new_term

    def decay_exempt(self) -> set[str]:
        """Kernels shared with the reference (after ``attach``): decay would fight the anchor."""
        return set(self.shared_names)


# --------------------------------------------------------------------------- BSS


class BSS:
    """Batch Spectral Shrinkage (Chen et al. 2019): ``eta * sum of the k smallest sigma^2`` of
    the batch feature matrix ``[B, D]`` entering the module ``feature_module`` (the classifier).
    """

    name = "bss"
    needs_inputs = False  # the classifier's input is captured by a hook

    def __init__(self, eta: float = 0.001, k: int = 1, *, feature_module: str) -> None:
        _check_non_negative(eta=eta)
        if int(k) != k or k < 1:
            raise ValueError(f"BSS k must be a positive integer, got {k}.")
        self.eta, self.k, self.feature_module = float(eta), int(k), feature_module
        self._features: Tensor | None = None
        self._handle: RemovableHandle | None = None

    def attach(self, model: nn.Module) -> None:
        """Hook the input of ``feature_module`` with a forward pre-hook."""
        self.detach()
        module = _submodule(model, self.feature_module, f"{PARAMS_PATH}.bss.feature_module")

        def hook(module: nn.Module, args: tuple[Any, ...]) -> None:
            self._features = args[0]

        self._handle = module.register_forward_pre_hook(hook)

    def detach(self) -> None:
        """Remove the hook and drop the captured features."""
        if self._handle is not None:
            self._handle.remove()
        self._handle = None
        self._features = None

    def penalty(self, model: nn.Module, inputs: Tensor) -> Tensor:
        """``eta * sum_{i<=k} sigma_{-i}^2`` of the captured features (computed in float32)."""
        features = _check_batch(self._features, inputs, "BSS", "classifier inputs")
        flat = features.reshape(features.shape[0], -1).float()
        if self.k > min(flat.shape):
            raise ValueError(f"BSS k={self.k} exceeds min(batch, feature dim) = "
                             f"{min(flat.shape)}; lower {PARAMS_PATH}.bss.k.")
        singular_values = torch.linalg.svdvals(flat)  # descending
        return self.eta * singular_values[-self.k:].pow(2).sum()

    def decay_exempt(self) -> set[str]:
        """Empty: BSS does not touch weights directly."""
        return set()


# --------------------------------------------------------------------------- composition


class CompositeRegularizer:
    """Sum of several regularizers; with none, a zero penalty named ``"none"``."""

    def __init__(self, regularizers: Iterable[Regularizer]) -> None:
        self.regularizers = list(regularizers)
        self.name = "+".join(r.name for r in self.regularizers) or "none"

    @property
    def needs_inputs(self) -> bool:
        """True while some part must see the (normalised) images of each batch."""
        return any(getattr(r, "needs_inputs", False) for r in self.regularizers)

    def precompute_reference(self, inputs: Tensor, batch_size: int = 128) -> None:
        """Let parts that can precompute per-sample targets do so (DELTA)."""
        for regularizer in self.regularizers:
            if hasattr(regularizer, "precompute_reference"):
                regularizer.precompute_reference(inputs, batch_size)

    def select(self, sample_indices: Tensor) -> None:
        """Forward the batch's sample indices to parts that precomputed per-sample targets."""
        for regularizer in self.regularizers:
            if hasattr(regularizer, "select"):
                regularizer.select(sample_indices)

    def attach(self, model: nn.Module) -> None:
        """Attach every part."""
        for regularizer in self.regularizers:
            regularizer.attach(model)

    def detach(self) -> None:
        """Detach every part."""
        for regularizer in self.regularizers:
            regularizer.detach()

    def penalty_terms(self, model: nn.Module, inputs: Tensor) -> dict[str, Tensor]:
        """Each part's penalty by name (for logging)."""
        return {r.name: r.penalty(model, inputs) for r in self.regularizers}

    def penalty(self, model: nn.Module, inputs: Tensor) -> Tensor:
        """Sum of the parts' penalties."""
        terms = list(self.penalty_terms(model, inputs).values())
        return torch.stack(terms).sum() if terms else torch.zeros((), device=inputs.device)

    def decay_exempt(self) -> set[str]:
        """Union of the parts' exemptions."""
        return set().union(*(r.decay_exempt() for r in self.regularizers))


_ALLOWED_KEYS = {
    "none": set(),
    "l2": {"beta"},
    "l2_sp": {"alpha", "beta", "anchor_bn", "new_param_names"},
    "delta": {"alpha", "beta", "layer_names", "new_param_names", "cached_reference"},
}
_BSS_KEYS = {"eta", "k", "feature_module"}


def _last_linear_name(model: nn.Module) -> str:
    names = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    if not names:
        raise ValueError(f"BSS: the model has no nn.Linear classifier; set "
                         f"{PARAMS_PATH}.bss.feature_module to the classifier's module name.")
    return names[-1]


def _build_bss(model: nn.Module, settings: Mapping[str, Any]) -> BSS:
    unknown = set(settings) - _BSS_KEYS
    if unknown:
        raise ValueError(f"Unknown key(s) {sorted(unknown)} in {PARAMS_PATH}.bss; "
                         f"allowed: {sorted(_BSS_KEYS)}.")
    feature_module = settings.get("feature_module") or _last_linear_name(model)
    logger.info("BSS on the inputs of %r", feature_module)
    return BSS(settings.get("eta", 0.001), settings.get("k", 1), feature_module=feature_module)


def _require_anchor(anchor_model: nn.Module | None, name: str) -> nn.Module:
    if anchor_model is None:
        raise ValueError(f"{PARAMS_PATH}.name={name!r} needs the pretrained model as "
                         "anchor_model.")
    return anchor_model


def build_regularizer(
    name: str,
    model: nn.Module,
    anchor_model: nn.Module | None = None,
    params: Mapping[str, Any] | None = None,
    attention: Mapping[str, Tensor] | None = None,
) -> CompositeRegularizer:
    """Build the regularizer named ``name`` (one of :data:`REGULARIZER_NAMES`).

    ``model``: the network to fine-tune (after surgery). ``anchor_model``: the pretrained
    network (required by ``l2_sp`` and ``delta``). ``params``: the ``finetune.regularizer``
    settings; a ``name`` key is ignored, other keys are checked:
    ``l2``: beta; ``l2_sp``: alpha, beta, anchor_bn, new_param_names; ``delta``: alpha, beta,
    layer_names (default: the keys of ``attention``), new_param_names, cached_reference;
    any name: ``bss: {eta, k, feature_module}`` adds BSS (feature_module defaults to the last
    nn.Linear). ``attention``: DELTA channel weights by layer (None: uniform).
    Returns a :class:`CompositeRegularizer` (named ``"none"`` and zero when nothing applies);
    call its ``attach(model)`` before building the optimizer so ``decay_exempt()`` is complete.
    """
    if name not in _ALLOWED_KEYS:
        raise ValueError(f"Unknown regularizer {name!r} in {PARAMS_PATH}.name; "
                         f"valid: {', '.join(REGULARIZER_NAMES)}.")
    settings = {k: v for k, v in (params or {}).items() if k != "name"}
    unknown = set(settings) - _ALLOWED_KEYS[name] - {"bss"}
    if unknown:
        raise ValueError(f"Unknown key(s) {sorted(unknown)} in {PARAMS_PATH} for {name!r}; "
                         f"allowed: {sorted(_ALLOWED_KEYS[name] | {'bss'})}.")
    bss_settings = settings.pop("bss", None)
    parts: list[Regularizer] = []
    if name == "l2":
        parts.append(L2Penalty(model, settings.get("beta", 0.01)))
    elif name == "l2_sp":
        anchor = _require_anchor(anchor_model, name).state_dict()
        parts.append(L2SP(model, anchor, **settings))
    elif name == "delta":
        layer_names = settings.pop("layer_names", None) or list(attention or [])
        if not layer_names:
            raise ValueError(f"{PARAMS_PATH}.layer_names is required for 'delta' (module "
                             "names whose outputs are the stage feature maps).")
        reference = _require_anchor(anchor_model, name)
        parts.append(DELTA(reference, layer_names, attention, **settings))
    if bss_settings:
        parts.append(_build_bss(model, bss_settings))
    return CompositeRegularizer(parts)


# --------------------------------------------------------------------------- DELTA attention


@contextlib.contextmanager
def _eval_mode(modules: Iterable[nn.Module]) -> Iterator[None]:
    """Eval mode inside, every submodule's own mode restored after (``train()`` recurses, so
    restoring only the top modules would flip children that were in another mode)."""
    saved = [(m, m.training) for module in modules for m in module.modules()]
    try:
        for module, _ in saved:
            module.training = False
        yield
    finally:
        for module, mode in saved:
            module.training = mode


def _run(stages: Sequence[nn.Module], x: Tensor) -> Tensor:
    for stage in stages:
        x = stage(x)
    return x


def stage_features(stages: Sequence[nn.Module], inputs: Tensor, batch_size: int = 64) -> Tensor:
    """Penultimate features ``[N, D]`` of ``inputs`` through ``stages`` (eval, inference mode)."""
    device = next((p.device for s in stages for p in s.parameters()), inputs.device)
    with _eval_mode(stages), torch.inference_mode():
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
    with _eval_mode([*stages, probe]), torch.inference_mode(), bar:
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
