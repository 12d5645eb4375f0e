"""The cheap alternatives a fine-tuned network must beat: a linear probe on frozen pretrained
features (as a deployable network: the headless backbone plus the fitted head) and classical
classifiers on raw downsampled grey pixels (logistic regression, RBF SVC)."""

from __future__ import annotations

import copy
import logging
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.calibration import CalibratedClassifierCV
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC
from torch import nn

from ft_pipelines.core.data import ImageData, MappedImages
from ft_pipelines.core.evaluation.cost import timed_calls_ms, timing_summary
from ft_pipelines.core.evaluation.metrics import classification_metrics
from ft_pipelines.core.evaluation.settings import EvaluationParams
from ft_pipelines.core.similarity import extract_features
from ft_pipelines.core.utils import classifier_name

logger = logging.getLogger(__name__)
PIXEL_BASELINES = ("pixels_logreg", "pixels_svc")
_ABSENT_CLASS_BIAS = -1e4  # a class missing from the training split gets ~0 probability


def _folded_linear(probe: Pipeline, num_classes: int) -> nn.Linear:
    """The scaler + logistic regression as one ``nn.Linear`` with the same softmax output.

    z = (x - mean) / scale, logits = W z + b  =>  W' = W / scale, b' = b - W' mean. A binary
    regression has one decision value d: softmax([0, d]) is its sigmoid.
    """
    scaler, regression = probe[0], probe[-1]
    weight, bias = regression.coef_, regression.intercept_
    if weight.shape[0] == 1:
        weight = np.vstack([np.zeros_like(weight), weight])
        bias = np.concatenate([[0.0], bias])
    weight = weight / scaler.scale_
    bias = bias - weight @ scaler.mean_
    linear = nn.Linear(weight.shape[1], num_classes)
    with torch.no_grad():
        linear.weight.zero_()
        linear.bias.fill_(_ABSENT_CLASS_BIAS)
        linear.weight[regression.classes_] = torch.as_tensor(weight, dtype=torch.float32)
        linear.bias[regression.classes_] = torch.as_tensor(bias, dtype=torch.float32)
    return linear


def linear_probe_model(pretrained: nn.Module, train: ImageData, num_classes: int,
                       max_iter: int = 2000, device: str | None = None) -> nn.Module:
    """Logistic regression on the frozen pretrained features, returned as the network a user
    would deploy: a copy of the backbone whose classifier is the fitted head (so its parameters,
    MACs, size and latency are the headless backbone's plus a ``num_classes`` head)."""
    features = extract_features(pretrained, train.images, record_bn=False,
                                progress=False, device=device).penultimate
    probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=max_iter, C=0.1))
    probe.fit(features, train.labels.numpy())
    model = copy.deepcopy(pretrained).eval()
    model.set_submodule(classifier_name(model), _folded_linear(probe, num_classes))
    return model


def grey_pixels(images: torch.Tensor | MappedImages, size: int, batch_size: int = 512
                ) -> np.ndarray:
    """uint8 [N, C, H, W] -> grey, area-downsampled to ``size`` x ``size``, flattened, in [0, 1].

    Read ``batch_size`` rows at a time: on-disk shards (manifest mode) never come into RAM whole.
    """
    parts = []
    for start in range(0, len(images), batch_size):
        grey = images[start:start + batch_size].float().mean(dim=1, keepdim=True) / 255.0
        parts.append(F.interpolate(grey, size=(size, size), mode="area").flatten(1).numpy())
    return np.concatenate(parts) if parts else np.zeros((0, size * size), dtype=np.float32)


PLATT_FOLDS = 5  # cross-validation folds of the SVC's probability calibration


def _pixel_classifier(name: str, settings: EvaluationParams, labels: np.ndarray
                      ) -> tuple[Pipeline, str | None]:
    """(unfitted classifier, a note for the report when it had to adapt to the data)."""
    if name == "pixels_logreg":
        head = LogisticRegression(max_iter=settings.probe_max_iter)
        return make_pipeline(StandardScaler(), head), None
    # RBF SVC refitted on all training images, Platt-scaled (probabilities: top-5, ECE). The
    # folds are stratified: each class needs as many training images as there are folds.
    smallest = int(np.bincount(labels)[np.unique(labels)].min())
    folds = min(PLATT_FOLDS, smallest)
    if folds < 2:
        note = (f"a class has {smallest} training image: too few for Platt scaling, so the "
                "probabilities are a softmax of the SVC's one-vs-rest decision values")
        return make_pipeline(StandardScaler(), _SoftmaxSVC()), note
    note = None if folds == PLATT_FOLDS else (
        f"Platt scaling on {folds} folds (the smallest class has {smallest} training images)")
    return make_pipeline(StandardScaler(),
                         CalibratedClassifierCV(SVC(kernel="rbf"), ensemble=False, cv=folds)), note


class _SoftmaxSVC(SVC):
    """An RBF SVC whose ``predict_proba`` is the softmax of its one-vs-rest decision values:
    uncalibrated, for training sets too small to calibrate on."""

    def __init__(self) -> None:
        super().__init__(kernel="rbf", decision_function_shape="ovr")

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        scores = self.decision_function(x)
        if scores.ndim == 1:  # two classes: one signed distance
            scores = np.stack([-scores, scores], axis=1)
        scores = scores - scores.max(axis=1, keepdims=True)
        exp = np.exp(scores)
        return exp / exp.sum(axis=1, keepdims=True)


def _fitted_arrays(obj: Any, seen: set[int] | None = None) -> list[np.ndarray]:
    """Every numeric array a fitted scikit-learn object holds, nested estimators included."""
    seen = set() if seen is None else seen
    if id(obj) in seen:
        return []
    seen.add(id(obj))
    if isinstance(obj, np.ndarray):
        return [obj] if obj.dtype.kind in "fiu" else []
    if isinstance(obj, list | tuple):
        return [a for item in obj for a in _fitted_arrays(item, seen)]
    if type(obj).__module__.startswith("sklearn."):
        return [a for value in vars(obj).values() for a in _fitted_arrays(value, seen)]
    return []


def _fitted_size(classifier: Pipeline) -> tuple[int, int]:
    """(numbers stored, bytes) of the fitted arrays: the model's size as data."""
    arrays = _fitted_arrays(classifier)
    return sum(a.size for a in arrays), sum(a.nbytes for a in arrays)


def _pixel_macs(classifier: Pipeline) -> int:
    """Multiply-adds of one prediction: W x for the regression; for the SVC one squared
    distance per support vector plus the dual-coefficient sums."""
    head = classifier[-1]
    if isinstance(head, CalibratedClassifierCV | SVC):
        svc = head if isinstance(head, SVC) else head.calibrated_classifiers_[0].estimator
        return int(svc.support_vectors_.size + svc.dual_coef_.size)
    return int(head.coef_.size)


def pixel_baselines(train: ImageData, test: ImageData, class_names: list[str],
                    settings: EvaluationParams | dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Rows ``pixels_logreg`` and ``pixels_svc``: fitted on the training split's grey pixels at
    ``pixel_size``, scored on the test split; cost measured on images at the models' input size
    (grey conversion and downsampling included in the timings)."""
    settings = EvaluationParams.model_validate(settings) if isinstance(settings, dict) \
        else settings
    size = settings.pixel_size
    train_x, test_x = grey_pixels(train.images, size), grey_pixels(test.images, size)
    batch = settings.throughput_batch
    shape = tuple(test.images.shape[1:])
    one = torch.randint(0, 256, (1, *shape), dtype=torch.uint8)
    many = torch.randint(0, 256, (batch, *shape), dtype=torch.uint8)
    rows = {}
    for name in PIXEL_BASELINES:
        classifier, note = _pixel_classifier(name, settings, train.labels.numpy())
        classifier.fit(train_x, train.labels.numpy())
        probs = np.zeros((len(test), len(class_names)))
        probs[:, classifier.classes_] = classifier.predict_proba(test_x)
        row = classification_metrics(probs, test.labels.numpy(), class_names)
        numbers, size_bytes = _fitted_size(classifier)
        warmup, runs = settings.latency_warmup, settings.latency_runs
        timings_1 = timed_calls_ms(lambda c=classifier: c.predict_proba(grey_pixels(one, size)),
                                   warmup, runs)
        timings_batch = timed_calls_ms(
            lambda c=classifier: c.predict_proba(grey_pixels(many, size)), 1, 3)
        row.update({"params": numbers, "macs": _pixel_macs(classifier), "size_bytes": size_bytes,
                    **timing_summary(timings_1, timings_batch, batch),
                    "input": f"grey {size}x{size} pixels"})
        if note:
            row["note"] = note
            logger.warning("%s: %s", name, note)
        rows[name] = row
        logger.info("%s: top-1 %.4f", name, row["top1"])
    return rows
