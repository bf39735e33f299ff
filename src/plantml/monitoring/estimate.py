"""Performance before the labels arrive: confidence-based estimation from calibrated probabilities.

A failure model outputs ``p = P(failure within the horizon)``. If ``p`` is
calibrated, a window with probability ``p`` is a true positive with
probability ``p`` when it alarms and a missed failure with probability ``p``
when it does not, so the expected confusion matrix of a chunk, and from it
precision, recall and F1, follow from the probabilities alone (CBPE, as
NannyML calls it). The model's raw outputs are usually not calibrated (class
balanced sampling inflates them), so the export fits an isotonic calibrator on
the validation split (:func:`fit_isotonic`) and keeps it in the reference
profile. Numpy only.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np


def fit_isotonic(scores: np.ndarray, labels: np.ndarray, max_knots: int = 200) -> dict[str, Any]:
    """Isotonic regression of 0/1 ``labels`` on ``scores`` (n,) by pool-adjacent-violators.

    Returns ``{"method": "isotonic", "x": [...], "y": [...]}``: knots of a
    non-decreasing piecewise-linear map from score to probability (at most
    ``max_knots``, block means of the PAV solution).
    """
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(labels, dtype=np.float64)
    ok = np.isfinite(s) & np.isfinite(y)
    s, y = s[ok], y[ok]
    if len(s) == 0:
        raise ValueError("no finite scores with labels to calibrate on")
    order = np.argsort(s, kind="stable")
    s, y = s[order], y[order]
    # PAV over blocks of equal scores: values, weights, score sums
    uniq, start = np.unique(s, return_index=True)
    w = np.diff(np.r_[start, len(s)]).astype(np.float64)
    v = np.add.reduceat(y, start) / w
    xs = uniq * w
    vals, wts, xsum = [], [], []
    for vi, wi, xi in zip(v, w, xs, strict=True):
        vals.append(vi)
        wts.append(wi)
        xsum.append(xi)
        while len(vals) > 1 and vals[-2] > vals[-1]:
            wt = wts[-2] + wts[-1]
            vals[-2] = (vals[-2] * wts[-2] + vals[-1] * wts[-1]) / wt
            xsum[-2] += xsum[-1]
            wts[-2] = wt
            del vals[-1], wts[-1], xsum[-1]
    knots_x = np.array(xsum) / np.array(wts)
    knots_y = np.array(vals)
    if len(knots_x) > max_knots:  # merge neighbours into groups of about equal weight
        wt = np.array(wts)
        group = np.minimum((np.cumsum(wt) - wt / 2) / wt.sum() * max_knots, max_knots - 1)
        group = np.unique(group.astype(int), return_inverse=True)[1]
        total = np.bincount(group, weights=wt)
        knots_x = np.bincount(group, weights=knots_x * wt) / total
        knots_y = np.bincount(group, weights=knots_y * wt) / total
    return {
        "method": "isotonic",
        "x": [float(f"{a:.7g}") for a in knots_x],
        "y": [float(f"{a:.7g}") for a in knots_y],
        "windows": len(s),
    }


def calibrate(scores: np.ndarray, calibrator: Mapping[str, Any] | None) -> np.ndarray:
    """Calibrated probabilities (n,) for raw scores (n,); identity without a calibrator."""
    s = np.asarray(scores, dtype=np.float64)
    if not calibrator:
        return np.clip(s, 0.0, 1.0)
    x = np.asarray(calibrator["x"], dtype=np.float64)
    y = np.asarray(calibrator["y"], dtype=np.float64)
    if len(x) == 1:
        return np.full_like(s, y[0])
    return np.interp(s, x, y)


def expected_performance(
    probabilities: np.ndarray, alarms: np.ndarray, min_windows: int = 1
) -> dict[str, float]:
    """Expected confusion counts and precision, recall, F1 from calibrated probabilities.

    Args:
        probabilities: calibrated P(positive) per window, (n,).
        alarms: the model's 0/1 decision per window, (n,).

    Returns:
        ``tp, fp, fn, tn`` (expected counts), ``precision``, ``recall``, ``f1``,
        ``positive_rate`` and ``windows``; NaN where undefined.
    """
    p = np.asarray(probabilities, dtype=np.float64)
    a = np.asarray(alarms).astype(bool)
    ok = np.isfinite(p)
    p, a = p[ok], a[ok]
    nan = float("nan")
    if len(p) < min_windows or len(p) == 0:
        return {"windows": len(p), "precision": nan, "recall": nan, "f1": nan}
    tp, fp = float(p[a].sum()), float((1 - p[a]).sum())
    fn, tn = float(p[~a].sum()), float((1 - p[~a]).sum())
    precision = tp / (tp + fp) if tp + fp > 0 else nan
    recall = tp / (tp + fn) if tp + fn > 0 else nan
    f1 = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn > 0 else nan
    return {
        "windows": len(p),
        "tp": tp,
        "fp": fp,
        "fn": fn,
        "tn": tn,
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "positive_rate": float(p.mean()),
    }


def realized_performance(labels: np.ndarray, alarms: np.ndarray) -> dict[str, float]:
    """Precision, recall and F1 of 0/1 ``alarms`` (n,) against 0/1 ``labels`` (n,)."""
    y = np.asarray(labels).astype(bool)
    a = np.asarray(alarms).astype(bool)
    tp, fp, fn = int((a & y).sum()), int((a & ~y).sum()), int((~a & y).sum())
    nan = float("nan")
    return {
        "windows": len(y),
        "tp": tp,
        "fp": fp,
        "fn": fn,
        "tn": int((~a & ~y).sum()),
        "precision": tp / (tp + fp) if tp + fp else nan,
        "recall": tp / (tp + fn) if tp + fn else nan,
        "f1": 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else nan,
        "positive_rate": float(y.mean()) if len(y) else nan,
    }
