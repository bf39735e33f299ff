"""Performance once the truth arrives: predictions joined to events, scored when labels are known.

Events are rows ``asset, time, kind[, end_time]`` with kind ``failure``,
``maintenance``, ``inspection`` or ``anomaly`` (confirmed, from ``time`` to
``end_time``). The rules follow the training targets (:mod:`plantml.data.targets`):
a *life* ends at a failure or a maintenance.

- **failure within the horizon H**: a prediction at ``t`` is positive once the
  asset fails in ``(t, t + H]`` (known at the failure), negative once ``t + H``
  has passed with the asset still in the same life (known at ``t + H``), and
  censored when a maintenance ends the life first. Scored: precision, recall,
  F1, false alarms per asset-day, and the lead time of the first alarm in the
  horizon before each failure.
- **RUL**: when the asset fails at ``f``, every prediction of that life gets
  its realized RUL ``f - t`` (capped like the training target); error, RMSE,
  MAE, bias. A life ended by maintenance is censored.
- **anomaly**: an alarm is right when its time falls inside a confirmed
  anomaly; predictions are labeled up to the asset's last inspection or
  confirmed anomaly; detection delay per confirmed anomaly.

Everything is reported overall, per condition and per period of prediction
time, with the label delay (label time minus prediction time) and the share
of predictions still waiting for their label.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from plantml.monitoring.estimate import realized_performance

EVENT_KINDS = ("failure", "maintenance", "inspection", "anomaly")
UNIT_SECONDS = {"s": 1.0, "min": 60.0, "h": 3600.0, "d": 86400.0, "D": 86400.0}
DAY_SECONDS = 86400.0


@dataclass
class PredictionLog:
    """Predictions as arrays (n,): asset (str), time (float), condition (str), value, alarm (0/1/NaN)."""

    asset: np.ndarray
    time: np.ndarray
    condition: np.ndarray
    value: np.ndarray
    alarm: np.ndarray

    def __len__(self) -> int:
        return len(self.time)

    def take(self, idx: np.ndarray) -> PredictionLog:
        return PredictionLog(*(a[idx] for a in self.__dict__.values()))


@dataclass
class EventLog:
    """Events as arrays (m,): asset (str), time (float), kind (str), end_time (float, NaN if none)."""

    asset: np.ndarray
    time: np.ndarray
    kind: np.ndarray
    end_time: np.ndarray

    def of(self, asset: str, kind: str) -> np.ndarray:
        sel = (self.asset == asset) & (self.kind == kind)
        return np.sort(self.time[sel])


@dataclass
class Labels:
    """Per prediction (n,): ``label`` (float, NaN unknown), ``known_at`` (label time, NaN),
    ``status`` (``labeled``, ``pending`` or ``censored``)."""

    label: np.ndarray
    known_at: np.ndarray
    status: np.ndarray


def _next(times: np.ndarray, t: np.ndarray) -> np.ndarray:
    """For each t, the first of ``times`` (sorted) strictly after t; inf if none."""
    i = np.searchsorted(times, t, side="right")
    return np.where(
        i < len(times), times[np.minimum(i, len(times) - 1)] if len(times) else np.inf, np.inf
    )


def _next_at_or_after(times: np.ndarray, t: np.ndarray) -> np.ndarray:
    i = np.searchsorted(times, t, side="left")
    return np.where(
        i < len(times), times[np.minimum(i, len(times) - 1)] if len(times) else np.inf, np.inf
    )


def _blank(n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return np.full(n, np.nan), np.full(n, np.nan), np.full(n, "pending", dtype=object)


def _lives(preds: PredictionLog, events: EventLog):
    """Per asset: prediction indices, times, and the next failure (at or after) and next
    maintenance (after) each prediction; inf when none."""
    for asset in np.unique(preds.asset):
        sel = np.flatnonzero(preds.asset == asset)
        t = preds.time[sel]
        fail = _next_at_or_after(events.of(asset, "failure"), t)
        yield sel, t, fail, _next(events.of(asset, "maintenance"), t)


def failure_labels(preds: PredictionLog, events: EventLog, horizon: float, now: float) -> Labels:
    """Failure-within-horizon labels (see the module docstring); times in the log's units."""
    label, known, status = _blank(len(preds))
    for sel, t, fail, maint in _lives(preds, events):
        life_end = np.minimum(fail, maint)
        positive = (fail <= t + horizon) & (fail <= maint)
        negative = ~positive & (t + horizon <= np.minimum(life_end, now))
        censored = ~positive & ~negative & (maint < t + horizon) & (maint <= now)
        positive &= fail <= now
        label[sel[positive]], known[sel[positive]] = 1.0, fail[positive]
        label[sel[negative]], known[sel[negative]] = 0.0, (t + horizon)[negative]
        status[sel[positive | negative]] = "labeled"
        status[sel[censored]] = "censored"
    return Labels(label, known, status)


def rul_labels(
    preds: PredictionLog, events: EventLog, now: float, rul_cap: float | None = None
) -> Labels:
    """Realized RUL per prediction once its life ended in a failure (see the module docstring)."""
    label, known, status = _blank(len(preds))
    for sel, t, fail, maint in _lives(preds, events):
        done = (fail <= maint) & (fail <= now)
        rul = fail - t
        if rul_cap is not None:
            rul = np.minimum(rul, float(rul_cap))
        label[sel[done]], known[sel[done]] = rul[done], fail[done]
        status[sel[done]] = "labeled"
        status[sel[~done & (maint < fail) & (maint <= now)]] = "censored"
    return Labels(label, known, status)


def anomaly_labels(preds: PredictionLog, events: EventLog, now: float) -> Labels:
    """1 inside a confirmed anomaly, 0 outside, for predictions up to the asset's last check."""
    label, known, status = _blank(len(preds))
    for asset in np.unique(preds.asset):
        sel = np.flatnonzero(preds.asset == asset)
        t = preds.time[sel]
        mine = (events.asset == asset) & (events.kind == "anomaly")
        start = events.time[mine]
        end = np.where(np.isfinite(events.end_time[mine]), events.end_time[mine], start)
        checked = events.time[(events.asset == asset) & (events.kind == "inspection")]
        horizon = max([*checked.tolist(), *end.tolist(), -np.inf])
        horizon = min(horizon, now)
        inside = ((t[:, None] >= start[None]) & (t[:, None] <= end[None])).any(1)
        ok = t <= horizon
        label[sel[ok]] = inside[ok].astype(float)
        known[sel[ok]] = horizon
        status[sel[ok]] = "labeled"
    return Labels(label, known, status)


def _regression(y: np.ndarray, pred: np.ndarray) -> dict[str, Any]:
    err = pred - y
    if len(err) == 0:
        return {"windows": 0, "rmse": None, "mae": None, "bias": None}
    return {
        "windows": len(err),
        "rmse": float(np.sqrt(np.mean(err**2))),
        "mae": float(np.mean(np.abs(err))),
        "bias": float(np.mean(err)),
    }


def _metrics(kind: str, y: np.ndarray, preds: PredictionLog) -> dict[str, Any]:
    if kind == "rul":
        return _regression(y, preds.value)
    alarm = np.nan_to_num(preds.alarm.astype(float)) > 0
    return realized_performance(y > 0.5, alarm)


def _lead_times(preds: PredictionLog, events: EventLog, horizon: float, now: float) -> list[dict]:
    """Per failure: detected (an alarm in the horizon before it) and the first alarm's lead time."""
    out = []
    fails = (events.kind == "failure") & (events.time <= now)
    for asset, f in zip(events.asset[fails], events.time[fails], strict=True):
        sel = (preds.asset == asset) & (preds.time >= f - horizon) & (preds.time < f)
        if not sel.any():
            continue  # no prediction covered this failure
        alarms = preds.time[sel & (np.nan_to_num(preds.alarm.astype(float)) > 0)]
        out.append(
            {
                "asset": str(asset),
                "time": float(f),
                "detected": bool(len(alarms)),
                "lead_time": float(f - alarms.min()) if len(alarms) else None,
            }
        )
    return out


def _detection_delays(preds: PredictionLog, events: EventLog, now: float) -> list[dict]:
    """Per confirmed anomaly: detected (an alarm inside it) and the delay of the first alarm."""
    out = []
    sel_events = (events.kind == "anomaly") & (events.time <= now)
    for asset, start, end in zip(
        events.asset[sel_events], events.time[sel_events], events.end_time[sel_events], strict=True
    ):
        end = end if np.isfinite(end) else start
        sel = (preds.asset == asset) & (preds.time >= start) & (preds.time <= end)
        alarms = preds.time[sel & (np.nan_to_num(preds.alarm.astype(float)) > 0)]
        out.append(
            {
                "asset": str(asset),
                "start": float(start),
                "end": float(end),
                "detected": bool(len(alarms)),
                "delay": float(alarms.min() - start) if len(alarms) else None,
            }
        )
    return out


def score(
    kind: str,
    preds: PredictionLog,
    events: EventLog,
    *,
    now: float | None = None,
    horizon: float | None = None,
    rul_cap: float | None = None,
    periods: np.ndarray | None = None,
    day: float = DAY_SECONDS,
) -> dict[str, Any]:
    """Delayed-label performance of a prediction log; times in one unit (seconds or cycles).

    Args:
        kind: the bundle's task kind (failure, rul, anomaly).
        now: labels are known up to this time (default: the latest prediction or event).
        horizon: the failure horizon, in the log's time units (failure only).
        rul_cap: the training RUL cap, if any (rul only).
        periods: edges (P+1,) of the periods of prediction time to report over time.
        day: time units per day, for false alarms per asset-day (1 for cycles: per asset-cycle).
    """
    if now is None:
        now = float(np.nanmax(np.r_[preds.time, events.time, -np.inf]))
    if kind == "failure":
        if horizon is None:
            raise ValueError("scoring failure predictions needs the horizon")
        labels = failure_labels(preds, events, float(horizon), now)
    elif kind == "rul":
        labels = rul_labels(preds, events, now, rul_cap)
    elif kind == "anomaly":
        labels = anomaly_labels(preds, events, now)
    else:
        return {"kind": kind, "scored": False, "reason": f"no delayed-label scoring for {kind!r}"}
    ok = labels.status == "labeled"
    delay = labels.known_at[ok] - preds.time[ok]
    result: dict[str, Any] = {
        "kind": kind,
        "scored": True,
        "now": now,
        "predictions": len(preds),
        "labeled": int(ok.sum()),
        "pending": int((labels.status == "pending").sum()),
        "censored": int((labels.status == "censored").sum()),
        "label_delay": {
            "median": float(np.median(delay)) if len(delay) else None,
            "p90": float(np.quantile(delay, 0.9)) if len(delay) else None,
            "max": float(delay.max()) if len(delay) else None,
        },
        "overall": _metrics(kind, labels.label[ok], preds.take(ok)),
        "by_condition": {},
        "over_time": [],
    }
    for c in np.unique(preds.condition[ok]):
        sel = ok & (preds.condition == c)
        result["by_condition"][str(c)] = _metrics(kind, labels.label[sel], preds.take(sel))
    if kind == "failure":
        fa = int(
            ((np.nan_to_num(preds.alarm[ok].astype(float)) > 0) & (labels.label[ok] == 0)).sum()
        )
        span = _asset_span(preds.take(ok)) / day
        result["overall"]["false_alarms_per_asset_day"] = fa / span if span > 0 else None
        result["failures"] = _lead_times(preds, events, float(horizon), now)
        leads = [f["lead_time"] for f in result["failures"] if f["lead_time"] is not None]
        result["overall"]["failures"] = len(result["failures"])
        result["overall"]["failures_detected"] = len(leads)
        result["overall"]["median_lead_time"] = float(np.median(leads)) if leads else None
    if kind == "anomaly":
        result["anomalies"] = _detection_delays(preds, events, now)
    if periods is not None:
        for a, b in itertools.pairwise(periods):
            in_p = (preds.time >= a) & (preds.time < b)
            sel = in_p & ok
            row = {
                "start": float(a),
                "end": float(b),
                "predictions": int(in_p.sum()),
                "labeled": int(sel.sum()),
                "pending": int((in_p & (labels.status == "pending")).sum()),
                **{
                    key: value
                    for key, value in _metrics(kind, labels.label[sel], preds.take(sel)).items()
                    if key != "windows"
                },
            }
            d = labels.known_at[sel] - preds.time[sel]
            row["median_label_delay"] = float(np.median(d)) if len(d) else None
            result["over_time"].append(row)
    return result


def _asset_span(preds: PredictionLog) -> float:
    """Total time the predictions cover, summed over assets (first to last prediction each)."""
    total = 0.0
    for asset in np.unique(preds.asset):
        t = preds.time[preds.asset == asset]
        if len(t) > 1:
            steps = np.diff(np.sort(t))
            total += float(t.max() - t.min() + np.median(steps))
    return total


def horizon_in_log_units(task: Mapping[str, Any], time_kind: str) -> float | None:
    """The failure horizon of a bundle's task in the prediction log's units (seconds or cycles)."""
    horizon = task.get("horizon")
    if horizon is None:
        return None
    if time_kind != "datetime":
        return float(horizon)
    unit = task.get("horizon_unit") or task.get("unit")
    if unit not in UNIT_SECONDS:
        raise ValueError(
            f"the bundle's failure horizon {horizon} has no time unit (re-export the bundle, or "
            "pass --horizon-seconds)"
        )
    return float(horizon) * UNIT_SECONDS[unit]
