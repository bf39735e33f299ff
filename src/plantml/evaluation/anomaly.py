"""Anomaly scores: alarm thresholds calibrated on normal data, and detection metrics.

Thresholds come from the scores of NORMAL windows only (validation windows
labelled 0), so no anomaly label is needed to set them:

- :func:`quantile_threshold`: the ``q``-quantile of the normal scores (a
  false-alarm rate of about ``1 - q`` on normal data).
- :func:`pot_threshold`: peaks over threshold (SPOT, Siffer et al., KDD 2017):
  a generalized Pareto tail fitted above an initial quantile, extrapolated to
  a risk (false-alarm probability) smaller than the data can show directly.

:func:`anomaly_metrics` scores alarms ``score >= threshold`` against per-window
labels, including detection delay per anomalous event.
"""

from __future__ import annotations

import logging
import math

import numpy as np
import torch

from plantml.errors import ConfigError, DataError

log = logging.getLogger(__name__)


def _scores(scores, what: str = "scores") -> np.ndarray:
    values = np.asarray(scores, dtype=np.float64).reshape(-1)
    values = values[np.isfinite(values)]
    if not len(values):
        raise DataError(
            f"no finite {what} to calibrate the alarm threshold on: the validation split needs "
            "normal (label 0) windows; give it more assets / rows, or set task.threshold to a number"
        )
    return values


def quantile_threshold(scores, q: float = 0.99) -> float:
    """The ``q``-quantile of normal scores ``(n,)`` (linear interpolation)."""
    if not 0.0 < q < 1.0:
        raise ConfigError(f"task.quantile must be in (0, 1), got {q}")
    return float(np.quantile(_scores(scores), q))


def gpd_fit(excesses: np.ndarray) -> tuple[float, float]:
    """(shape γ, scale σ) of a generalized Pareto distribution with location 0 (maximum likelihood).

    Falls back to the exponential fit (γ = 0, σ = mean excess) when the
    optimizer fails or returns a non-positive scale.
    """
    from scipy.stats import genpareto

    excesses = np.asarray(excesses, dtype=np.float64)
    mean = float(excesses.mean())
    if len(excesses) < 3 or not np.ptp(excesses) > 0:
        return 0.0, max(mean, 1e-12)
    try:
        gamma, _, sigma = genpareto.fit(excesses, floc=0.0)
    except (RuntimeError, ValueError, FloatingPointError):
        return 0.0, max(mean, 1e-12)
    if not (math.isfinite(gamma) and math.isfinite(sigma) and sigma > 0):
        return 0.0, max(mean, 1e-12)
    return float(gamma), float(sigma)


def pot_threshold(scores, level: float = 0.98, risk: float = 1e-3) -> float:
    """Peaks-over-threshold alarm threshold for a false-alarm probability ``risk``.

    ``t`` is the ``level``-quantile of the normal scores ``(n,)``; the ``N_t``
    excesses ``score - t`` above it are fitted with a generalized Pareto
    distribution (shape γ, scale σ), and the threshold is

        z = t + (σ / γ) * ((risk * n / N_t) ** (-γ) - 1)

    (for γ → 0, the exponential tail: ``z = t - σ * ln(risk * n / N_t)``).
    ``risk`` must be smaller than ``1 - level``: the tail starts at ``t``.
    """
    if not 0.0 < level < 1.0:
        raise ConfigError(f"task.pot_level must be in (0, 1), got {level}")
    if not 0.0 < risk < 1.0 - level:
        raise ConfigError(
            f"task.pot_risk={risk} must be in (0, 1 - pot_level = {1 - level:.4g}): POT "
            "extrapolates beyond the initial quantile; lower pot_risk or pot_level"
        )
    values = _scores(scores, "normal scores")
    t = float(np.quantile(values, level))
    excesses = values[values > t] - t
    if len(excesses) < 2:
        raise DataError(
            f"only {len(excesses)} normal validation scores lie above the pot_level={level} "
            f"quantile ({len(values)} scores in all): too few to fit a tail; lower task.pot_level, "
            "use more validation data, or use task.threshold=quantile"
        )
    if len(excesses) < 20:
        log.warning(
            "POT fits its tail to %d excesses only; the threshold is uncertain "
            "(lower task.pot_level or use more validation data)",
            len(excesses),
        )
    gamma, sigma = gpd_fit(excesses)
    ratio = risk * len(values) / len(excesses)
    if abs(gamma) < 1e-6:
        return t - sigma * math.log(ratio)
    return t + (sigma / gamma) * (ratio ** (-gamma) - 1.0)


def detection_events(
    alarm: np.ndarray, positive: np.ndarray, assets: np.ndarray | None, ends: np.ndarray | None
) -> tuple[int, int, float | None]:
    """(events, detected events, mean delay of the detected ones in windows).

    An event is a maximal run of consecutive positive windows of one asset in
    time order (``ends`` orders windows within an asset; without it, the given
    order). Its delay is the number of windows from its first window to its
    first alarm (0: alarmed at once).
    """
    n = len(alarm)
    assets = np.zeros(n, np.int64) if assets is None else np.asarray(assets)
    ends = np.arange(n) if ends is None else np.asarray(ends)
    order = np.lexsort((np.arange(n), ends, assets))
    alarm, positive, assets = alarm[order], positive[order], assets[order]
    new_asset = np.r_[True, assets[1:] != assets[:-1]]
    starts = positive & (new_asset | ~np.r_[False, positive[:-1]])
    events = int(starts.sum())
    if not events:
        return 0, 0, None
    event_id = np.cumsum(starts) - 1  # valid on positive rows
    start_index = np.flatnonzero(starts)
    rows = np.flatnonzero(positive & alarm)
    first = np.full(events, np.iinfo(np.int64).max)
    np.minimum.at(first, event_id[rows], rows - start_index[event_id[rows]])
    detected = first < np.iinfo(np.int64).max
    delay = float(first[detected].mean()) if detected.any() else None
    return events, int(detected.sum()), delay


def anomaly_metrics(scores, labels, threshold: float, assets=None, ends=None) -> dict:
    """Detection quality of alarms ``score >= threshold`` against labels (1: anomalous window).

    Inputs are 1-D ``(windows,)`` arrays or tensors. Returns precision,
    recall, F1, ``false_alarm_rate`` (FP / normal windows),
    ``missed_alarm_rate`` (FN / anomalous windows), ``events``,
    ``detected_share`` (events with at least one alarm), ``detection_delay``
    (mean windows from an event's start to its first alarm, over detected
    events), AUROC (both classes present), the confusion counts and ``n``;
    ``None`` where a metric is undefined. Windows labelled NaN (unlabelled data)
    count only in ``alarms`` and ``alarm_rate``; ``labelled`` says how many had labels.
    """
    from plantml.evaluation.metrics import classification_metrics

    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    if len(scores) == 0:
        return {"n": 0}
    labels = np.asarray(labels, dtype=np.float64).reshape(-1)
    known = np.isfinite(labels)
    if not known.all():  # unlabelled windows: alarms count, detection metrics need labels
        base = {
            "n": len(scores),
            "labelled": int(known.sum()),
            "alarms": int((scores >= threshold).sum()),
            "alarm_rate": float((scores >= threshold).mean()),
            "threshold": float(threshold),
        }
        if not known.any():
            return base
        part = {
            k: None if v is None else np.asarray(v).reshape(-1)[known]
            for k, v in (("assets", assets), ("ends", ends))
        }
        return {**anomaly_metrics(scores[known], labels[known], threshold, **part), **base}
    positive = labels > 0.5
    alarm = scores >= threshold
    # precision, recall, F1, AUROC and the counts: the same rule as failure alarms
    out = classification_metrics(
        torch.from_numpy(scores), torch.from_numpy(positive.astype(np.int64)), float(threshold)
    )
    for key in ("auprc", "false_alarms_per_1000"):
        out.pop(key, None)
    tp, fp, tn, fn = out["tp"], out["fp"], out["tn"], out["fn"]
    events, detected, delay = detection_events(
        alarm,
        positive,
        None if assets is None else np.asarray(assets).reshape(-1),
        None if ends is None else np.asarray(ends).reshape(-1),
    )
    out.update(
        false_alarm_rate=fp / (fp + tn) if fp + tn else None,
        missed_alarm_rate=fn / (tp + fn) if tp + fn else None,
        detection_delay=delay,
        detected_share=detected / events if events else None,
        threshold=float(threshold),
        events=events,
        detected_events=detected,
    )
    return out
