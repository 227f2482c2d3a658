"""Per-genre Platt scaling fitted on validation, expected calibration error, and folding the fitted
scaling into the model's last Dense layer (exact: sigmoid(a(Wx + c) + b) = sigmoid(aWx + ac + b)),
so the served model outputs calibrated probabilities with no extra code at serving time."""

from __future__ import annotations

from dataclasses import dataclass

import keras
import numpy as np

ECE_BINS = 15
_EPS = 1e-6


def logit(probs: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(probs, dtype=np.float64), _EPS, 1 - _EPS)
    return np.log(p / (1 - p))


def sigmoid(z: np.ndarray) -> np.ndarray:
    """The logistic function, without overflow for large |z|."""
    z = np.asarray(z, dtype=np.float64)
    e = np.exp(-np.abs(z))
    return np.where(z >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def _log_loss(z: np.ndarray, y: np.ndarray, a: float, b: float, l2: float) -> float:
    s = a * z + b
    # log(1 + exp(s)) - y s, computed stably.
    return float((np.logaddexp(0.0, s) - y * s).sum() + 0.5 * l2 * ((a - 1) ** 2 + b**2))


@dataclass(frozen=True)
class Platt:
    """p' = sigmoid(scale * logit(p) + shift), one pair per genre (identity: scale 1, shift 0)."""

    scale: np.ndarray
    shift: np.ndarray

    @classmethod
    def identity(cls, n_genres: int) -> Platt:
        return cls(np.ones(n_genres), np.zeros(n_genres))

    def apply(self, probs: np.ndarray) -> np.ndarray:
        return sigmoid(logit(probs) * self.scale + self.shift)


def _fit_one(
    z: np.ndarray, y: np.ndarray, l2: float = 1e-2, steps: int = 50
) -> tuple[float, float]:
    """Damped Newton's method on the log-loss, lightly pulled toward the identity (1, 0): each
    step is halved until the loss goes down, so it cannot diverge."""
    a, b = 1.0, 0.0
    loss = _log_loss(z, y, a, b, l2)
    for _ in range(steps):
        p = sigmoid(a * z + b)
        r = p - y
        w = p * (1 - p)
        grad = np.array([(r * z).sum() + l2 * (a - 1), r.sum() + l2 * b])
        hess = np.array([[(w * z * z).sum() + l2, (w * z).sum()], [(w * z).sum(), w.sum() + l2]])
        step = np.linalg.solve(hess, grad)
        for _ in range(30):
            trial = _log_loss(z, y, a - step[0], b - step[1], l2)
            if trial <= loss:
                break
            step = step / 2
        else:
            break
        a, b, loss = a - step[0], b - step[1], trial
        if np.abs(step).max() < 1e-8:
            break
    return float(a), float(b)


def fit_platt(labels: np.ndarray, probs: np.ndarray, fit_mask: np.ndarray) -> Platt:
    """Fit genres where `fit_mask` is true (enough validation positives); others keep identity."""
    z, y = logit(probs), np.asarray(labels, dtype=np.float64)
    scale, shift = np.ones(y.shape[1]), np.zeros(y.shape[1])
    for j in np.flatnonzero(fit_mask):
        scale[j], shift[j] = _fit_one(z[:, j], y[:, j])
    return Platt(scale, shift)


def expected_calibration_error(
    labels: np.ndarray, probs: np.ndarray, bins: int = ECE_BINS
) -> float:
    """ECE over every (poster, genre) pair, equal-width bins, weighted by bin size."""
    p = np.asarray(probs, dtype=np.float64).ravel()
    y = np.asarray(labels, dtype=np.float64).ravel()
    which = np.minimum((p * bins).astype(int), bins - 1)
    total = 0.0
    for b in range(bins):
        inside = which == b
        if inside.any():
            total += inside.sum() * abs(p[inside].mean() - y[inside].mean())
    return float(total / len(p))


def reliability(
    labels: np.ndarray, probs: np.ndarray, bins: int = ECE_BINS
) -> list[dict[str, float]]:
    """Per bin: mean predicted probability, observed frequency, count (for the card's plot)."""
    p = np.asarray(probs, dtype=np.float64).ravel()
    y = np.asarray(labels, dtype=np.float64).ravel()
    which = np.minimum((p * bins).astype(int), bins - 1)
    rows = []
    for b in range(bins):
        inside = which == b
        if inside.any():
            rows.append(
                {
                    "mean_probability": float(p[inside].mean()),
                    "frequency": float(y[inside].mean()),
                    "count": int(inside.sum()),
                }
            )
    return rows


def cross_validated_ece(
    labels: np.ndarray, probs: np.ndarray, fit_mask: np.ndarray, folds: int = 5, seed: int = 0
) -> tuple[float, float]:
    """(ECE without scaling, ECE with Platt scaling fitted on the other folds): does it help?"""
    order = np.random.default_rng(seed).permutation(len(labels))
    calibrated = np.empty_like(np.asarray(probs, dtype=np.float64))
    for fold in np.array_split(order, folds):
        rest = np.setdiff1d(order, fold)
        platt = fit_platt(labels[rest], probs[rest], fit_mask)
        calibrated[fold] = platt.apply(probs[fold])
    return expected_calibration_error(labels, probs), expected_calibration_error(labels, calibrated)


def fold_into_model(model: keras.Model, platt: Platt, layer_name: str = "genres") -> None:
    """Rewrite the sigmoid layer's kernel and bias so the model outputs `platt.apply(p)`."""
    layer = model.get_layer(layer_name)
    kernel, bias = layer.get_weights()
    layer.set_weights(
        [
            (kernel * platt.scale[None, :]).astype(kernel.dtype),
            (bias * platt.scale + platt.shift).astype(bias.dtype),
        ]
    )
