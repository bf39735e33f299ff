"""The alarm state machine: k-of-n, minimum duration, hysteresis, cooldown, persistence."""

from __future__ import annotations

import numpy as np
import pytest

from plantml.agent.alarms import AlarmRule, AlarmTracker, run_alarms


def events(rule: AlarmRule, values, times=None):
    times = list(range(len(values))) if times is None else times
    return [
        (e.kind, e.t)
        for e in run_alarms(rule, [float(t) for t in times], [float(v) for v in values])
    ]


def test_k1_n1_gives_the_raw_alarms_rising_and_falling_edges():
    values = [0.1, 0.9, 0.8, 0.2, 0.95, 0.1, 0.1, 0.7]
    rule = AlarmRule(0.5, 0.5)
    assert events(rule, values) == [
        ("raised", 1),
        ("cleared", 3),
        ("raised", 4),
        ("cleared", 5),
        ("raised", 7),
    ]


def test_k_of_n_ignores_isolated_spikes():
    values = [0, 1, 0, 0, 1, 0, 0, 0, 1, 1, 0, 1]
    rule = AlarmRule(0.5, 0.5, k=3, n=4)
    # hits at 8, 9, 11: the first window with 3 hits in the last 4 ends at 11
    assert events(rule, values) == [("raised", 11)]
    assert events(AlarmRule(0.5, 0.5, k=2, n=4), values) == [
        ("raised", 4),
        ("cleared", 6),
        ("raised", 9),
    ]


def test_minimum_duration_needs_the_evidence_to_hold():
    values = [1, 1, 0, 0, 1, 1, 1, 1]
    times = [0, 10, 20, 30, 40, 50, 60, 70]
    rule = AlarmRule(0.5, 0.5, k=1, n=1, min_duration=25)
    # 0..10 breaks at 20 (15 s held); 40 starts again and 40 + 25 <= 70
    assert events(rule, values, times) == [("raised", 70)]


def test_hysteresis_keeps_an_alarm_between_the_thresholds():
    values = [0.9, 0.45, 0.42, 0.35, 0.25, 0.9]
    rule = AlarmRule(raise_at=0.8, clear_at=0.3)
    assert events(rule, values) == [("raised", 0), ("cleared", 4), ("raised", 5)]


def test_cooldown_suppresses_new_alarms_then_raises_if_still_true():
    values = [1, 0, 1, 1, 1, 0, 0]
    times = [0, 1, 2, 3, 4, 5, 6]
    rule = AlarmRule(0.5, 0.5, cooldown=3)
    # cleared at 1; raising again is allowed from t=4
    assert events(rule, values, times) == [
        ("raised", 0),
        ("cleared", 1),
        ("raised", 4),
        ("cleared", 5),
    ]


def test_below_direction_for_rul():
    values = [80, 40, 20, 10, 30, 60, 80]
    rule = AlarmRule(raise_at=25, clear_at=50, direction="below")
    assert events(rule, values) == [("raised", 2), ("cleared", 5)]


def test_events_carry_the_evidence():
    tracker = AlarmTracker(AlarmRule(0.5, 0.3, k=2, n=3))
    assert tracker.update(0, 0.6, "t0") is None
    raised = tracker.update(1, 0.7, "t1")
    assert raised.kind == "raised" and raised.time == "t1"
    assert raised.evidence["values"] == [0.6, 0.7] and raised.evidence["times"] == ["t0", "t1"]
    assert raised.evidence["hits"] == 2 and raised.evidence["raise_threshold"] == 0.5
    assert tracker.update(2, 0.9, "t2") is None
    assert tracker.update(3, 0.2, "t3") is None
    cleared = tracker.update(4, 0.1, "t4")
    assert cleared.kind == "cleared" and cleared.evidence["peak"] == 0.9
    assert cleared.evidence["active_since"] == "t1" and cleared.evidence["active_for"] == 3


def test_state_round_trips_and_resumes_identically():
    rng = np.random.default_rng(0)
    values = (rng.random(400) > 0.6).astype(float) * rng.random(400) + 0.2 * rng.random(400)
    rule = AlarmRule(0.5, 0.3, k=3, n=5, min_duration=2, cooldown=4)
    whole = events(rule, values)
    assert len(whole) > 4
    first = AlarmTracker(rule)
    got = []
    for t, v in enumerate(values[:200]):
        if (e := first.update(float(t), float(v))) is not None:
            got.append((e.kind, e.t))
    second = AlarmTracker(rule)
    import json

    second.load_state_dict(json.loads(json.dumps(first.state_dict())))
    for t, v in enumerate(values[200:], start=200):
        if (e := second.update(float(t), float(v))) is not None:
            got.append((e.kind, e.t))
    assert got == whole


def test_overrides_let_a_rule_decide():
    tracker = AlarmTracker(AlarmRule(0.5, 0.5, k=2, n=2))
    assert tracker.update(0, None, hit=True, safe=False) is None
    assert tracker.update(1, None, hit=True, safe=False).kind == "raised"


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"raise_at": 0.5, "clear_at": 0.7}, "alarm side"),
        ({"raise_at": 10, "clear_at": 5, "direction": "below"}, "alarm side"),
        ({"raise_at": 0.5, "clear_at": 0.5, "k": 3, "n": 2}, "k <= n"),
        ({"raise_at": 0.5, "clear_at": 0.5, "direction": "up"}, "above or below"),
        ({"raise_at": 0.5, "clear_at": 0.5, "cooldown": -1}, ">= 0"),
    ],
)
def test_bad_rules_are_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        AlarmRule(**kwargs)
