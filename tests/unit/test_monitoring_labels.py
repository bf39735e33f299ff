"""Delayed labels on hand-made cases, and the label-free performance estimate."""

from __future__ import annotations

import numpy as np
import pytest

from plantml.monitoring.estimate import (
    calibrate,
    expected_performance,
    fit_isotonic,
    realized_performance,
)
from plantml.monitoring.labels import (
    EventLog,
    PredictionLog,
    anomaly_labels,
    failure_labels,
    horizon_in_log_units,
    rul_labels,
    score,
)


def log(asset, time, value=None, alarm=None, condition=None) -> PredictionLog:
    n = len(time)
    return PredictionLog(
        np.array(asset if isinstance(asset, list) else [asset] * n, dtype=object),
        np.asarray(time, dtype=float),
        np.array(condition or ["c"] * n, dtype=object),
        np.asarray(value if value is not None else np.zeros(n), dtype=float),
        np.asarray(alarm if alarm is not None else np.full(n, np.nan), dtype=float),
    )


def events(*rows) -> EventLog:
    return EventLog(
        np.array([r[0] for r in rows], dtype=object),
        np.array([r[1] for r in rows], dtype=float),
        np.array([r[2] for r in rows], dtype=object),
        np.array([r[3] if len(r) > 3 else np.nan for r in rows], dtype=float),
    )


def test_failure_labels_wait_for_the_horizon_or_the_failure():
    # asset p1 fails at 100; horizon 24; data up to now = 130
    preds = log("p1", [10, 50, 76, 80, 99, 100, 110, 120])
    ev = events(("p1", 100.0, "failure"))
    lab = failure_labels(preds, ev, horizon=24, now=130)
    # 10 and 50: the horizon passed before the failure -> 0, known at t + 24
    # 76, 80, 99, 100: the failure is within 24 -> 1, known at the failure (100)
    # 110: a new life began after the failure; 110 + 24 > 130 -> still pending
    assert lab.label[:6].tolist() == [0, 0, 1, 1, 1, 1]
    assert lab.known_at[:6].tolist() == [34, 74, 100, 100, 100, 100]
    assert lab.status[6:].tolist() == ["pending", "pending"]
    later = failure_labels(preds, ev, horizon=24, now=200)
    assert later.label[6:].tolist() == [0, 0] and later.known_at[6] == 134


def test_maintenance_censors_failure_and_rul_labels():
    preds = log("p1", [0, 10, 20, 30])
    ev = events(("p1", 25.0, "maintenance"), ("p1", 60.0, "failure"))
    lab = failure_labels(preds, ev, horizon=24, now=100)
    # 0: 0 + 24 < 25 -> negative; 10, 20: the maintenance ends the life first -> censored
    # 30: new life, failure at 60 > 30 + 24 -> negative at 54
    assert lab.status.tolist() == ["labeled", "censored", "censored", "labeled"]
    assert lab.label[[0, 3]].tolist() == [0, 0]
    rul = rul_labels(preds, ev, now=100, rul_cap=20)
    assert rul.status.tolist() == ["censored", "censored", "censored", "labeled"]
    assert rul.label[3] == 20  # min(60 - 30, cap 20)
    assert rul_labels(preds, ev, now=50).status[3] == "pending"  # not failed yet


def test_anomaly_labels_up_to_the_last_check():
    preds = log("p1", [1, 5, 6, 9, 15, 30])
    ev = events(("p1", 5.0, "anomaly", 9.0), ("p1", 20.0, "inspection"))
    lab = anomaly_labels(preds, ev, now=100)
    assert lab.label[:5].tolist() == [0, 1, 1, 1, 0]
    assert lab.status[5] == "pending"  # after the last inspection


def test_score_failure_metrics_lead_time_and_delay():
    t = np.arange(0, 100, 4.0)  # one prediction every 4 h, asset p1 fails at 100
    alarm = (t >= 84).astype(float)  # alarms from 84 on: 16 h of lead time
    alarm[3] = 1.0  # one false alarm at 12
    preds = log("p1", t, value=alarm * 0.9, alarm=alarm)
    ev = events(("p1", 100.0, "failure"))
    result = score(
        "failure", preds, ev, now=200, horizon=24, periods=np.array([0, 50, 100]), day=24
    )
    o = result["overall"]
    positives = t >= 76  # failure within 24 h
    assert o["tp"] == int((positives & (alarm > 0)).sum()) == 4
    assert o["fp"] == 1 and o["fn"] == int((positives & (alarm == 0)).sum()) == 2
    assert o["precision"] == pytest.approx(4 / 5) and o["recall"] == pytest.approx(4 / 6)
    assert o["false_alarms_per_asset_day"] == pytest.approx(1 / (100 / 24))
    assert result["failures"] == [
        {"asset": "p1", "time": 100.0, "detected": True, "lead_time": 16.0}
    ]
    assert o["median_lead_time"] == 16.0
    assert result["labeled"] == len(t) and result["pending"] == 0
    # negatives are known 24 h after the prediction, positives at the failure
    delays = np.where(positives, 100 - t, 24.0)
    assert result["label_delay"]["median"] == pytest.approx(np.median(delays))
    assert [r["labeled"] for r in result["over_time"]] == [13, 12]
    assert result["over_time"][0]["precision"] == 0.0  # the false alarm, no positive yet


def test_score_rul_per_condition_and_missed_failure():
    preds = log(
        ["a"] * 3 + ["b"] * 2,
        [0, 10, 20, 0, 10],
        value=[100, 85, 70, 40, 30],
        condition=["x", "x", "y", "y", "y"],
    )
    ev = events(("a", 100.0, "failure"))
    result = score("rul", preds, ev, now=150, rul_cap=90)
    assert result["labeled"] == 3 and result["pending"] == 2
    # realized: min(100 - t, 90) = 90, 90, 80; errors 10, -5, -10
    assert result["overall"]["rmse"] == pytest.approx(np.sqrt((100 + 25 + 100) / 3))
    assert result["overall"]["bias"] == pytest.approx(-5 / 3)
    assert result["by_condition"]["y"]["windows"] == 1


def test_horizon_units():
    assert horizon_in_log_units({"horizon": 24, "horizon_unit": "h"}, "datetime") == 86400
    assert horizon_in_log_units({"horizon": 30}, "number") == 30
    with pytest.raises(ValueError, match="no time unit"):
        horizon_in_log_units({"horizon": 24}, "datetime")


def test_isotonic_calibration_and_expected_performance_match_realized():
    rng = np.random.default_rng(0)
    n = 100_000
    true_p = rng.beta(0.5, 6, n)
    labels = rng.random(n) < true_p
    scores = np.sqrt(true_p)  # a monotone but uncalibrated score
    cal = fit_isotonic(scores[: n // 2], labels[: n // 2])
    assert len(cal["x"]) <= 200 and np.all(np.diff(cal["y"]) >= 0)
    p = calibrate(scores[n // 2 :], cal)
    assert p.mean() == pytest.approx(true_p[n // 2 :].mean(), abs=0.006)
    alarms = scores[n // 2 :] >= 0.5
    est = expected_performance(p, alarms)
    real = realized_performance(labels[n // 2 :], alarms)
    for key in ("precision", "recall", "f1"):
        assert est[key] == pytest.approx(real[key], abs=0.03)
    # uncalibrated scores mislead: they claim a much higher precision
    naive = expected_performance(scores[n // 2 :], alarms)
    assert naive["precision"] > real["precision"] + 0.2
