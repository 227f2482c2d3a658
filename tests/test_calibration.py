"""Calibration: Platt scaling fitted on validation, ECE, and folding into the output layer."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from training import calibration


def test_platt_scaling_folded_into_the_last_layer_is_exact() -> None:
    inputs = keras.Input((5,))
    outputs = keras.layers.Dense(3, activation="sigmoid", name="genres")(inputs)
    model = keras.Model(inputs, outputs)
    x = np.random.default_rng(1).normal(size=(20, 5)).astype(np.float32)
    before = model.predict_on_batch(x).astype(np.float64)
    platt = calibration.Platt(np.array([0.5, 1.0, 2.0]), np.array([-1.0, 0.0, 0.3]))
    calibration.fold_into_model(model, platt)
    after = model.predict_on_batch(x).astype(np.float64)
    np.testing.assert_allclose(after, platt.apply(before), atol=1e-5)


def test_platt_scaling_repairs_an_overconfident_genre() -> None:
    rng = np.random.default_rng(0)
    truth_p = rng.uniform(0.05, 0.6, size=4000)
    labels = (rng.random(4000) < truth_p).astype(float)[:, None]
    overconfident = calibration.sigmoid(3 * calibration.logit(truth_p))[:, None]
    platt = calibration.fit_platt(labels, overconfident, np.array([True]))
    assert platt.scale[0] == pytest.approx(1 / 3, abs=0.05)
    before = calibration.expected_calibration_error(labels, overconfident)
    after = calibration.expected_calibration_error(labels, platt.apply(overconfident))
    assert after < before / 2
    plain, cross_validated = calibration.cross_validated_ece(
        labels, overconfident, np.array([True])
    )
    assert plain == pytest.approx(before) and cross_validated < plain / 2


def test_expected_calibration_error_by_hand() -> None:
    labels = np.array([[1], [0], [0], [0]])
    probs = np.array([[0.95], [0.95], [0.05], [0.05]])
    # Two bins: 0.95 predicted vs 0.5 observed (half the pairs), 0.05 vs 0 (the other half).
    assert calibration.expected_calibration_error(labels, probs) == pytest.approx(
        0.5 * 0.45 + 0.5 * 0.05
    )
    bins = calibration.reliability(labels, probs)
    assert [b["count"] for b in bins] == [2, 2]
