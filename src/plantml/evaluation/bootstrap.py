"""Confidence intervals for the metrics by resampling assets (a cluster bootstrap).

Windows cut from one asset share that asset's history, so they are not
independent: resampling windows treats 25 windows of one engine as 25
engines and gives intervals far too narrow. Here each bootstrap resample
draws as many assets as there are, with replacement, and takes every window
of each drawn asset (an asset drawn twice counts twice).

The metrics are exactly those of :mod:`plantml.evaluation.metrics`:

- ``kind="rul"``: ``rmse``, ``mae``, ``bias`` (mean of pred - true), ``score``
  (PHM08: sum of ``exp(-d/13) - 1`` for d < 0 and ``exp(d/10) - 1`` for d >= 0,
  d = pred - true; a sum, so it grows with the number of windows drawn).
- ``kind="failure"``: ``precision``, ``recall``, ``f1`` with alarms at
  ``prob >= threshold``, and ``false_alarms_per_1000`` = 1000 * FP / n.

All of them are functions of per-asset sums, so the sums are computed once per
asset, the resamples are a ``(n_boot, n_assets)`` matrix of multinomial counts,
and every resample's totals come from one matrix product. Measured pinned to one
core (taskset, one BLAS thread; numpy 2.4): 1,000,000 windows from 2,000 assets
with ``n_boot=1000`` take about 0.2 s for ``rul`` and 0.18 s for ``failure``,
of which ~0.11 s is the multinomial draw and ~0.05 s sorting the asset labels.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from plantml.errors import ConfigError, DataError
from plantml.evaluation.metrics import RUL_METRICS

# the metrics that decompose into per-asset sums (AUROC and AUPRC do not)
FAILURE_METRICS = ("precision", "recall", "f1", "false_alarms_per_1000")
_KINDS = {"rul": RUL_METRICS, "failure": FAILURE_METRICS}

Interval = tuple[float, float] | None


def _check(
    kind: str, pred: np.ndarray, target: np.ndarray, assets: np.ndarray, *extra: np.ndarray
) -> list[np.ndarray]:
    """Validate ``kind`` and shapes; ``[pred, target]`` as float64, then the rest as arrays."""
    if kind not in _KINDS:
        raise ConfigError(f"unknown metric kind {kind!r}: use 'rul' or 'failure'")
    arrays = [np.asarray(a) for a in (pred, target, assets, *extra)]
    n = len(arrays[0]) if arrays[0].ndim == 1 else -1
    if any(a.ndim != 1 or len(a) != n for a in arrays):
        shapes = ", ".join(str(a.shape) for a in arrays)
        raise DataError(
            f"pred, target, assets (and groups) must be 1-D arrays of one length, got {shapes}"
        )
    pred, target = arrays[0].astype(np.float64), arrays[1].astype(np.float64)
    if not (np.isfinite(pred).all() and np.isfinite(target).all()):
        raise DataError("pred and target must be finite: drop or fill NaN / inf windows first")
    return [pred, target, *arrays[2:]]


def _asset_stats(
    kind: str,
    pred: np.ndarray,
    target: np.ndarray,
    codes: np.ndarray,
    n_assets: int,
    threshold: float,
) -> np.ndarray:
    """``(n_assets, k)`` per-asset sums.

    rul: count, sum d^2, sum |d|, sum d, sum PHM08 terms (d = pred - target).
    failure: tp, fp, fn, tn.
    """
    if kind == "rul":
        d = pred - target
        phm = np.where(d < 0, np.expm1(-d / 13), np.expm1(d / 10))
        columns = [None, d * d, np.abs(d), d, phm]
    else:
        alarm, positive = pred >= threshold, target == 1
        columns = [alarm & positive, alarm & ~positive, ~alarm & positive, ~alarm & ~positive]
    return np.stack(
        [np.bincount(codes, weights=c, minlength=n_assets) for c in columns], axis=1
    ).astype(np.float64)


def _metrics_from_totals(kind: str, totals: np.ndarray) -> dict[str, np.ndarray]:
    """Metric value per row of ``totals`` (``(n_boot, k)``), NaN where undefined."""
    with np.errstate(divide="ignore", invalid="ignore"):
        if kind == "rul":
            n, sse, sae, se, score = totals.T
            return {"rmse": np.sqrt(sse / n), "mae": sae / n, "bias": se / n, "score": score}
        tp, fp, fn, tn = totals.T
        n = tp + fp + fn + tn
        return {
            "precision": np.where(tp + fp > 0, tp / (tp + fp), np.nan),
            "recall": np.where(tp + fn > 0, tp / (tp + fn), np.nan),
            "f1": np.where(tp + fn > 0, 2 * tp / (2 * tp + fp + fn), np.nan),
            "false_alarms_per_1000": np.where(n > 0, 1000.0 * fp / n, np.nan),
        }


def bootstrap_samples(
    kind: str,
    pred: np.ndarray,
    target: np.ndarray,
    assets: np.ndarray,
    threshold: float = 0.5,
    n_boot: int = 1000,
    seed: int = 0,
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """The resamples themselves: ``(counts, {metric: values})``.

    ``counts`` is the ``(n_boot, n_assets)`` int matrix of how often each asset
    is drawn, from ``np.random.default_rng(seed).multinomial(n_assets, [1/n_assets]
    * n_assets, size=n_boot)``; column j is the j-th asset of ``np.unique(assets)``.
    Each metric is a ``(n_boot,)`` float array, NaN where the resample leaves
    it undefined (precision with no alarm, recall with no positive, ...).
    """
    pred, target, assets = _check(kind, pred, target, assets)
    if n_boot < 1:
        raise ConfigError(f"n_boot must be at least 1, got {n_boot}")
    labels, codes = np.unique(assets, return_inverse=True)
    n_assets = len(labels)
    if n_assets == 0:
        empty = np.zeros((n_boot, 0), dtype=np.int64)
        return empty, {m: np.full(n_boot, np.nan) for m in _KINDS[kind]}
    stats = _asset_stats(kind, pred, target, codes.ravel(), n_assets, threshold)
    rng = np.random.default_rng(seed)
    counts = rng.multinomial(n_assets, np.full(n_assets, 1.0 / n_assets), size=n_boot)
    totals = counts.astype(np.float64) @ stats  # (n_boot, k)
    return counts, _metrics_from_totals(kind, totals)


def asset_bootstrap(
    kind: str,
    pred: np.ndarray,
    target: np.ndarray,
    assets: np.ndarray,
    threshold: float = 0.5,
    n_boot: int = 1000,
    level: float = 0.95,
    seed: int = 0,
) -> dict[str, Interval]:
    """Percentile confidence intervals of the metrics, resampling assets.

    Args:
        kind: ``"rul"`` (rmse, mae, bias, score) or ``"failure"`` (precision,
            recall, f1, false_alarms_per_1000); anything else is a ConfigError.
        pred: ``(n_windows,)`` RUL estimates, or failure probabilities.
        target: ``(n_windows,)`` true RUL, or 0/1 failure labels.
        assets: ``(n_windows,)`` asset id of each window (any sortable dtype).
        threshold: alarm when ``pred >= threshold`` (failure only).
        n_boot: number of resamples.
        level: coverage of the interval; the endpoints are the ``(1 - level) / 2``
            and ``(1 + level) / 2`` quantiles (numpy's linear interpolation) of
            the resample values.
        seed: seed of ``np.random.default_rng``; the same seed gives the same intervals.

    Returns:
        ``{metric: (low, high)}``. A resample where a metric is undefined is
        skipped for that metric; if fewer than half of the resamples define it
        the metric gets ``None``. With fewer than two assets every metric is
        ``None``: one asset cannot say how much assets vary, and its
        resamples would all be the same data (a zero-width interval that
        would look certain).
    """
    if not 0 < level < 1:
        raise ConfigError(f"level must lie strictly between 0 and 1, got {level}")
    counts, samples = bootstrap_samples(kind, pred, target, assets, threshold, n_boot, seed)
    if counts.shape[1] < 2:
        return dict.fromkeys(_KINDS[kind])
    q = [(1 - level) / 2, (1 + level) / 2]
    out: dict[str, Interval] = {}
    for name, values in samples.items():
        values = values[~np.isnan(values)]
        if 2 * len(values) < n_boot:
            out[name] = None
        else:
            low, high = np.quantile(values, q)
            out[name] = (float(low), float(high))
    return out


BOOT_METHODS = ("auto", "asset", "block")


def resampling_units(assets: np.ndarray, method: str = "auto") -> tuple[np.ndarray, str]:
    """The clusters a bootstrap resamples, and the method used (``asset`` or ``block``).

    ``asset``: the assets themselves. ``block``: within each asset, blocks of
    ``max(10, ceil(sqrt(n)))`` consecutive windows (``n``: the asset's windows, in
    the given order, which is time order in evaluation), so that a single asset's
    intervals come from resampling stretches of its history (a block bootstrap over
    time) rather than from nothing. ``auto``: ``block`` when there is one asset.
    """
    if method not in BOOT_METHODS:
        raise ConfigError(f"unknown bootstrap_method {method!r}; use one of {BOOT_METHODS}")
    assets = np.asarray(assets)
    labels, codes = np.unique(assets, return_inverse=True)
    codes = codes.reshape(-1)
    if method == "asset" or (method == "auto" and len(labels) > 1):
        return assets, "asset"
    units = np.empty(len(assets), dtype=np.int64)
    next_id = 0
    for j in range(len(labels)):
        rows = np.flatnonzero(codes == j)
        size = max(10, int(np.ceil(np.sqrt(len(rows)))))
        units[rows] = next_id + np.arange(len(rows)) // size
        next_id += (len(rows) + size - 1) // size
    return units, "block"


def bootstrap_by_group(
    kind: str,
    pred: np.ndarray,
    target: np.ndarray,
    assets: np.ndarray,
    groups: np.ndarray,
    **kw: Any,
) -> dict[Any, dict[str, Interval]]:
    """:func:`asset_bootstrap` within each group (e.g. operating-condition code).

    ``groups`` is ``(n_windows,)``. Within a group the assets are resampled
    with only their windows in that group, so an asset seen in several
    conditions counts as one cluster in each. ``kw`` (threshold, n_boot,
    level, seed) is passed unchanged to every group, so each group's result
    equals ``asset_bootstrap`` on that group's subset. Keys are the sorted
    group values as plain Python scalars.
    """
    pred, target, assets, groups = _check(kind, pred, target, assets, groups)
    out: dict[Any, dict[str, Interval]] = {}
    for value in np.unique(groups):
        mask = groups == value
        key = value.item() if hasattr(value, "item") else value
        out[key] = asset_bootstrap(kind, pred[mask], target[mask], assets[mask], **kw)
    return out
