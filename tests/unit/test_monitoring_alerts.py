"""Calibrated tests, false-alarm control, rules and the alert life cycle, verdicts."""

from __future__ import annotations

import json

import numpy as np
import pytest

from plantml.monitoring.errors import ProfileError, RuleError
from plantml.monitoring.monitor import Monitor
from plantml.monitoring.rules import AlertBook, Finding, load_rules, parse_rule
from plantml.monitoring.scenarios import Drift, Pool, fleet_chunks, thin_by_condition
from plantml.monitoring.sequential import SequentialTest, benjamini_hochberg, horizon_pvalue
from plantml.monitoring.sketch import ProfileSketch
from tests.monitoring_data import fleet


def test_horizon_pvalue_matches_simulation():
    rng = np.random.default_rng(0)
    runs, horizon, k = 4000, 50, 0.5
    s = np.zeros(runs)
    top = np.zeros(runs)
    for _ in range(horizon):
        s = np.maximum(0, s + rng.normal(size=runs) - k)
        top = np.maximum(top, s)
    for h in (2.0, 4.0, 6.0):
        assert horizon_pvalue(np.array([h]), k, horizon)[0] == pytest.approx(
            (top >= h).mean(), abs=0.02
        )
    p = horizon_pvalue(np.array([0.0, 1.0, 5.0, 30.0, 60.0, np.nan]), k, horizon)
    assert p[0] == 1.0 and p[1] > p[2] > p[3] > p[4] > 0 and np.isnan(p[5])


def test_benjamini_hochberg():
    p = np.array([0.001, 0.008, 0.039, 0.041, 0.042, 0.06, 0.074, 0.205, np.nan])
    # the classic example: at 0.05 the first two are rejected (0.039 > 3 * 0.05 / 8)
    assert benjamini_hochberg(p, 0.05).tolist() == [True, True] + [False] * 7
    assert not benjamini_hochberg(np.array([0.5, 0.9]), 0.05).any()
    assert benjamini_hochberg(np.array([0.01, 0.02, 0.03]), 0.05).all()


def test_cusum_state_since_and_persistence():
    test = SequentialTest(k=0.5, horizon=100, alpha=0.05)
    out = test.update({"a": -1.0, "b": 0.2}, time=1)
    assert out["a"]["s"] == 0 and out["a"]["since"] is None and not out["a"]["reject"]
    for t, z in enumerate([2.0, 3.0, 3.0, 3.0], start=2):
        out = test.update({"a": z, "b": 0.0}, time=t)
    assert out["a"]["since"] == 2  # where the excursion began
    assert out["a"]["s"] == pytest.approx(1.5 + 2.5 * 3)
    assert out["a"]["reject"] and not out["b"]["reject"]
    again = SequentialTest.from_dict(json.loads(json.dumps(test.to_dict())))
    assert again.update({"a": np.nan}, time=9)["a"]["s"] == out["a"]["s"]


def test_rule_errors_are_named(tmp_path):
    with pytest.raises(RuleError, match="unknown metric 'drift'"):
        parse_rule({"name": "x", "metric": "drift", "above": 1})
    with pytest.raises(RuleError, match="exactly one of above or below"):
        parse_rule({"name": "x", "metric": "psi"})
    with pytest.raises(RuleError, match="unknown key"):
        parse_rule({"name": "x", "metric": "psi", "above": 1, "treshold": 2})
    with pytest.raises(RuleError, match="persistence must be an integer >= 1"):
        parse_rule({"name": "x", "metric": "psi", "above": 1, "persistence": 0})
    with pytest.raises(RuleError, match="alpha must be between 0 and 1"):
        parse_rule({"name": "x", "metric": "input_drift", "alpha": 5})
    with pytest.raises(RuleError, match="severity"):
        parse_rule({"name": "x", "metric": "psi", "above": 1, "severity": "urgent"})
    (tmp_path / "r.yaml").write_text(
        "rules:\n  - {name: a, metric: psi, above: 0.2}\n  - {name: a, metric: ks, above: 0.2}\n"
    )
    with pytest.raises(RuleError, match="unique"):
        load_rules(tmp_path / "r.yaml")
    (tmp_path / "r2.yaml").write_text("rules: [\n")
    with pytest.raises(RuleError, match="cannot be parsed"):
        load_rules(tmp_path / "r2.yaml")
    with pytest.raises(RuleError, match="not found"):
        load_rules(tmp_path / "missing.yaml")
    assert next(r.name for r in load_rules()) == "input_drift"


def test_alert_book_persistence_hysteresis_and_dedup():
    rule = parse_rule(
        {
            "name": "m",
            "metric": "missing_rate",
            "above": 0.1,
            "clear": 0.05,
            "persistence": 2,
            "clear_after": 2,
        }
    )
    book = AlertBook([rule])

    def step(t, value):
        f = Finding("m", "low", "a", value, rule.breached(value))
        return book.apply([f], t, "report.md")

    assert step(1, 0.2)["opened"] == []  # one breach: not yet (persistence 2)
    opened = step(2, 0.3)["opened"]
    assert len(opened) == 1 and opened[0]["since"] == 1 and opened[0]["value"] == 0.3
    assert step(3, 0.4)["opened"] == []  # deduplicated while open
    assert step(4, 0.08)["resolved"] == []  # inside the hysteresis band: still open
    assert step(5, 0.01)["resolved"] == []  # one clear check of two
    resolved = step(6, 0.02)["resolved"]
    assert (
        len(resolved) == 1 and resolved[0]["status"] == "resolved" and resolved[0]["resolved"] == 6
    )
    # the state survives a restart (plain JSON)
    step(7, 0.5)
    again = AlertBook([rule], json.loads(json.dumps(book.state())))
    assert again.apply([Finding("m", "low", "a", 0.5, True)], 8, None)["opened"][0]["since"] == 7


def _stream(profile, rng, chunks, drift=None, thin=None, active=8, rows=20):
    hx, hc, hr = fleet(40, 200, seed=11)
    pool = Pool(hx, hc, hr)
    for t, idx in enumerate(fleet_chunks(pool, rng, chunks, active, rows)):
        x, codes = pool.x[idx], pool.codes[idx]
        if thin is not None and t >= 5:
            keep = thin_by_condition(codes, thin, rng)
            x, codes = x[keep], codes[keep]
        if drift is not None:
            x, codes = drift.apply(profile, t, x, codes, pool.runs[idx], rng)
        yield t, ProfileSketch(profile).update(x, codes)


def _run(profile, rules, **kw):
    monitor = Monitor(profile, load_rules(rules))
    rng = np.random.default_rng(kw.pop("seed", 0))
    return [monitor.check(t, sketch) for t, sketch in _stream(profile, rng, **kw)]


RULES = [
    {"name": "drift", "metric": "input_drift", "alpha": 0.05},
    {"name": "pooled", "metric": "input_drift", "view": "pooled", "alpha": 0.05},
    {"name": "mix", "metric": "mix_psi", "above": 0.1, "severity": "info"},
    {"name": "unseen", "metric": "unseen_fraction", "above": 0.02},
]


def test_bias_in_one_condition_is_found_in_that_condition(monitoring_profile):
    checks = _run(
        monitoring_profile, RULES, chunks=14, drift=Drift("bias", 2, 1.0, start=6, condition=1)
    )
    opened = [a for c in checks for a in c["alerts"]["opened"] if a["rule"] == "drift"]
    alert = opened[0]
    assert alert["opened"] >= 6 and alert["since"] >= 5
    assert (alert["condition"], alert["signal"]) == ("nominal", "c")
    assert alert["details"]["mean_shift"] == pytest.approx(1.0, abs=0.35)
    flagged = {(d["condition"], d["signal"]) for c in checks for d in c["verdict"]["input_drift"]}
    assert flagged <= {("nominal", "c"), ("nominal", "multivariate")}
    assert "input drift within condition 'nominal'" in checks[-1]["verdict"]["summary"]


def test_mix_shift_alone_is_a_note_not_input_drift(monitoring_profile):
    checks = _run(monitoring_profile, RULES, chunks=14, thin={0: 0.1, 2: 0.1})
    assert not any(c["verdict"]["input_drift"] for c in checks)
    assert all(c["verdict"]["mix_shift"] for c in checks[6:])
    assert "within each condition the inputs match training" in checks[-1]["verdict"]["summary"]
    opened = [a for c in checks for a in c["alerts"]["opened"]]
    assert {a["rule"] for a in opened} >= {"mix"}
    assert "drift" not in {a["rule"] for a in opened}
    # the condition-blind test pools all rows and mistakes the mix for drift
    assert "pooled" in {a["rule"] for a in opened}


def test_unseen_condition_is_flagged(monitoring_profile):
    checks = _run(monitoring_profile, RULES, chunks=10, drift=Drift("unseen", 0, 0.2, start=4))
    assert not checks[3]["verdict"]["unseen"] and checks[-1]["verdict"]["unseen"]
    assert checks[-1]["verdict"]["unseen_fraction"] == pytest.approx(0.2, abs=0.06)
    assert "conditions the model was not trained on" in checks[-1]["verdict"]["summary"]


def test_no_drift_gives_no_input_drift_alerts(monitoring_profile):
    alarms = 0
    for seed in range(6):
        checks = _run(monitoring_profile, RULES[:1], chunks=15, seed=100 + seed)
        alarms += any(c["alerts"]["opened"] for c in checks)
    assert alarms <= 1


def test_monitor_needs_a_null_for_input_drift(monitoring_profile):
    from plantml.monitoring.profile import ReferenceProfile

    bare = ReferenceProfile.from_dict({**monitoring_profile.to_dict(), "null": None})
    with pytest.raises(ProfileError, match="no null model"):
        Monitor(bare, load_rules(RULES[:1]))
    # threshold rules still work without it
    Monitor(bare, load_rules([{"name": "p", "metric": "psi", "above": 0.2}]))


def test_threshold_rules_on_features_and_outputs(monitoring_profile):
    rules = load_rules(
        [
            {"name": "psi", "metric": "psi", "above": 0.5, "condition": "low", "signal": "a"},
            {"name": "out", "metric": "output_psi", "above": 0.5},
            {"name": "alarms", "metric": "alarm_rate_ratio", "above": 3.0},
        ]
    )
    monitor = Monitor(monitoring_profile, rules)
    x, codes, _ = fleet(5, 200, seed=4)
    x[codes == 0, 0] += 5.0
    sketch = ProfileSketch(monitoring_profile).update(x, codes)
    sketch.update_outputs(np.full(200, 0.95), np.zeros(200, int), np.ones(200, int))
    result = monitor.check(1, sketch)
    keys = {(f["rule"], f["condition"], f["signal"]) for f in result["findings"]}
    assert ("psi", "low", "a") in keys
    assert ("out", "low", "failure_probability") in keys
    assert ("alarms", "low", "failure_probability") in keys
    assert not any(k[1] == "nominal" for k in keys)


def test_chunks_smaller_than_the_null_simulated_are_scored_without_bias(monitoring_profile):
    """Below the smallest simulated chunk, the null grows like sampling noise (rows ** -0.5):
    in-control chunks of 25 rows (8 to 12 per condition) score z about 0, not high."""
    from plantml.monitoring.drift import chunk_drift
    from plantml.monitoring.null import null_scores

    p = monitoring_profile
    assert p.null["rows"][:3, 0].min() > 10  # the smallest simulated chunk has more rows
    x, codes, _ = fleet(30, 200, seed=50)
    z = []
    for i in range(0, len(x), 25):
        drift = chunk_drift(p, ProfileSketch(p).update(x[i : i + 25], codes[i : i + 25]))
        z.append(null_scores(p, drift.input["wasserstein"], drift.n)[:3])
    z = np.array(z)
    assert np.isfinite(z).mean() > 0.3
    assert abs(np.nanmean(z)) < 0.4
