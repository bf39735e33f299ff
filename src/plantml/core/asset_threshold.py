"""Alarm thresholds that each asset learns from its own first windows of normal operation.

An anomaly score's normal level differs between assets (another pump, another test rig,
another installation), so one global threshold either misses anomalies on quiet assets or
raises sustained false alarms on busy ones. With ``task.asset_threshold`` in a bundle
manifest::

    {"windows": K, "quantile": q, "margin": m}

a device scores an asset's first ``K`` windows as calibration (no alarms; the asset is
assumed to run normally then, as SKAB's protocol assumes of each experiment's first 400
rows) and from then on alarms when ``score >= m * quantile_q(first K scores)``. Training
evaluates the same rule on each asset's head (:mod:`plantml.evaluation.skab`). Numpy only.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np


def check_spec(spec: Mapping[str, Any]) -> tuple[int, float, float]:
    """``(windows, quantile, margin)`` of a ``task.asset_threshold`` block, or ValueError."""
    k, q, m = spec.get("windows"), spec.get("quantile"), spec.get("margin")
    if not isinstance(k, int) or isinstance(k, bool) or k < 1:
        raise ValueError(f"asset_threshold.windows must be an integer >= 1, got {k!r}")
    if not isinstance(q, int | float) or not 0.0 < q < 1.0:
        raise ValueError(f"asset_threshold.quantile must be in (0, 1), got {q!r}")
    if not isinstance(m, int | float) or not m > 0:
        raise ValueError(f"asset_threshold.margin must be > 0, got {m!r}")
    return k, float(q), float(m)


def learned_threshold(scores: np.ndarray, quantile: float, margin: float) -> float:
    """``margin`` x the ``quantile`` of an asset's calibration scores ``(K,)``."""
    return float(margin * np.quantile(np.asarray(scores, np.float64), quantile))


def asset_thresholds(assets: np.ndarray, values: np.ndarray, spec: Mapping[str, Any]) -> np.ndarray:
    """Per window ``(n,)`` float64: its asset's learned threshold, NaN while calibrating.

    ``assets`` and ``values`` are per window, each asset's windows in time order (the
    windows of different assets may interleave).
    """
    k, q, m = check_spec(spec)
    out = np.full(len(values), np.nan)
    assets = np.asarray(assets)
    for a in dict.fromkeys(assets.tolist()):
        idx = np.flatnonzero(assets == a)
        if len(idx) > k:
            out[idx[k:]] = learned_threshold(np.asarray(values)[idx[:k]], q, m)
    return out
