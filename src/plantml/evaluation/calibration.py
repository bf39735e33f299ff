"""Calibrated failure probabilities: temperature / Platt scaling fitted on validation.

A failure model trained on rare, re-balanced positives ranks windows well but its
probabilities are not frequencies (a balanced sampler or a focal loss pushes them up).
Scaling the logit, ``p' = sigmoid(a * logit(p) + b)``, fitted by log-loss on the
validation windows, repairs that without changing the ranking (AUROC, AUPRC and the
alarms at a recalibrated threshold stay the same):

- ``temperature``: ``b = 0``, ``a = 1 / T`` (Guo et al. 2017), one parameter;
- ``platt``: ``a`` and ``b`` (Platt 1999), which also moves the base rate.

Isotonic regression is not offered: it is a step function that a device would need a
lookup table for, and with a few hundred positive windows it overfits the validation set.
The bundle applies the scaling inside its ONNX graph (:mod:`plantml.export.calibration`).
Torch-free.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import minimize

from plantml.errors import ConfigError, DataError

METHODS = ("temperature", "platt")
EPS = 1e-7  # probabilities are clipped to [EPS, 1 - EPS] before the logit (float32-safe)


def logit(p: np.ndarray) -> np.ndarray:
    """``log(p / (1 - p))`` of probabilities clipped to ``[EPS, 1 - EPS]`` (float64)."""
    p = np.clip(np.asarray(p, dtype=np.float64), EPS, 1.0 - EPS)
    return np.log(p) - np.log1p(-p)


def apply_scaling(p: np.ndarray, a: float, b: float) -> np.ndarray:
    """Calibrated probabilities ``sigmoid(a * logit(p) + b)`` ``(n,)`` float64."""
    return 1.0 / (1.0 + np.exp(-(a * logit(p) + b)))


def fit_scaling(p: np.ndarray, y: np.ndarray, method: str = "temperature") -> dict:
    """``{"method", "a", "b", "windows", "positives"}`` minimizing the log-loss on ``(p, y)``."""
    if method not in METHODS:
        raise ConfigError(f"unknown calibration.method {method!r}; use one of {', '.join(METHODS)}")
    y = np.asarray(y, dtype=np.float64)
    keep = np.isfinite(y)
    z, y = logit(p)[keep], y[keep]
    positives = int((y > 0.5).sum())
    if positives == 0 or positives == len(y):
        raise DataError(
            f"calibration needs validation windows of both classes; found {positives} positive "
            f"of {len(y)}: hold out more assets for validation (data.split_by.val_fraction)"
        )

    def nll(theta: np.ndarray) -> float:
        a, b = (theta[0], theta[1]) if method == "platt" else (theta[0], 0.0)
        s = a * z + b
        return float(np.mean(np.logaddexp(0.0, s) - y * s))

    start = np.array([1.0, 0.0] if method == "platt" else [1.0])
    theta = minimize(nll, start, method="L-BFGS-B").x
    a, b = float(theta[0]), float(theta[1]) if method == "platt" else 0.0
    return {"method": method, "a": a, "b": b, "windows": len(y), "positives": positives}


def reliability(p: np.ndarray, y: np.ndarray, bins: int = 10) -> dict:
    """Equal-width reliability bins: mean probability, observed frequency and count per bin."""
    p, y = np.asarray(p, np.float64), np.asarray(y, np.float64)
    which = np.minimum((p * bins).astype(np.int64), bins - 1)
    count = np.bincount(which, minlength=bins)
    conf = np.bincount(which, weights=p, minlength=bins) / np.maximum(count, 1)
    freq = np.bincount(which, weights=y, minlength=bins) / np.maximum(count, 1)
    return {"confidence": conf, "frequency": freq, "count": count}


def expected_calibration_error(p: np.ndarray, y: np.ndarray, bins: int = 10) -> float:
    """ECE: ``sum_b n_b / n * |frequency_b - confidence_b|`` over equal-width bins."""
    r = reliability(p, y, bins)
    n = max(int(r["count"].sum()), 1)
    return float(np.sum(r["count"] / n * np.abs(r["frequency"] - r["confidence"])))


def brier(p: np.ndarray, y: np.ndarray) -> float:
    """Mean squared error of the probabilities (lower is better)."""
    return float(np.mean((np.asarray(p, np.float64) - np.asarray(y, np.float64)) ** 2))
