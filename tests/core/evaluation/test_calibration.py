"""Temperature scaling: the fitted T undoes an over-confident model and lowers its ECE."""

from __future__ import annotations

import numpy as np
import pytest

from ft_pipelines.core.evaluation.calibration import (
    TEMPERATURE_RANGE,
    calibrated_scores,
    fit_calibration,
    fit_temperature,
    nll,
)
from ft_pipelines.core.evaluation.metrics import expected_calibration_error
from ft_pipelines.serving.image_classifier import softmax


def calibrated_toy(n: int, seed: int, classes: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """Logits whose softmax is calibrated by construction: labels drawn from it."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0.0, 1.5, (n, classes))
    probs = softmax(logits)
    labels = np.array([rng.choice(classes, p=p) for p in probs])
    return logits, labels


def test_the_temperature_fitted_on_an_overconfident_model_lowers_its_ece():
    val_logits, val_labels = calibrated_toy(3000, seed=0)
    test_logits, test_labels = calibrated_toy(3000, seed=1)
    scale = 5.0  # the miscalibrated model: the same logits x5 (far too confident)
    temperature = fit_temperature(scale * val_logits, val_labels)
    assert temperature == pytest.approx(scale, rel=0.15)
    before = expected_calibration_error(softmax(scale * test_logits), test_labels)
    after = expected_calibration_error(softmax(scale * test_logits, temperature), test_labels)
    assert after < before / 3
    scores = calibrated_scores(scale * test_logits, test_labels, list("abcd"), temperature)
    assert scores["ece"] == pytest.approx(after) and scores["ece_uncalibrated"] == before
    assert scores["top1"] == pytest.approx(float((test_logits.argmax(1) == test_labels).mean()))


def test_the_fit_minimises_nll_and_stays_in_range():
    logits, labels = calibrated_toy(500, seed=2)
    fitted = fit_calibration(logits, labels)
    t = fitted["fitted_temperature"]  # the NLL optimum (applied or not, see below)
    assert nll(logits, labels, t) <= min(nll(logits, labels, t * 0.9),
                                         nll(logits, labels, t * 1.1))
    assert fitted["nll_fitted"] <= fitted["nll_uncalibrated"]
    assert fitted["nll"] <= fitted["nll_uncalibrated"]
    # perfectly separable data: NLL keeps falling as T -> 0; the range stops it
    separable = np.eye(3)[np.arange(30) % 3] * 10
    assert fit_temperature(separable, np.arange(30) % 3) == pytest.approx(
        TEMPERATURE_RANGE[0], rel=1e-3)


def test_bad_inputs_are_refused():
    with pytest.raises(ValueError, match="labels must lie"):
        fit_temperature(np.zeros((2, 3)), np.array([0, 3]))
    with pytest.raises(ValueError, match="NaN or infinity"):
        fit_temperature(np.array([[np.nan, 0.0]]), np.array([0]))
    with pytest.raises(ValueError, match="temperature must be"):
        softmax(np.zeros((1, 2)), 0.0)


def test_a_temperature_that_raises_the_validation_ece_is_not_applied():
    """A real toy case (60 images, 3 classes) where the NLL optimum (T = 0.75) lowers the
    validation NLL but raises its ECE (0.095 -> 0.155): T = 1 is kept, and the summary says
    what was fitted and why it was not applied. The separable split (T at the range's end)
    keeps T = 1 too; the overconfident model's T is applied."""
    rng = np.random.default_rng(2)
    labels = rng.integers(0, 3, 60)
    logits = rng.normal(0, 1, (60, 3))
    logits[np.arange(60), labels] += rng.uniform(0.5, 4)  # one margin for every image
    fitted = fit_calibration(logits, labels)
    assert fitted["fitted_temperature"] == pytest.approx(0.75, abs=0.01)
    assert fitted["nll_fitted"] < fitted["nll_uncalibrated"]
    assert fitted["ece_fitted"] > fitted["ece_uncalibrated"]
    assert fitted["temperature"] == 1.0 and fitted["ece"] == fitted["ece_uncalibrated"]
    assert "raises its ECE" in fitted["not_applied"]
    separable = fit_calibration(np.eye(3)[np.arange(30) % 3] * 10, np.arange(30) % 3)
    assert separable["temperature"] == 1.0 and "separable" in separable["not_applied"]
    val_logits, val_labels = calibrated_toy(3000, seed=0)
    overconfident = fit_calibration(5.0 * val_logits, val_labels)
    assert overconfident["not_applied"] is None
    assert overconfident["temperature"] == pytest.approx(5.0, rel=0.15)
    assert overconfident["ece"] < overconfident["ece_uncalibrated"]
