"""The agent's engine in process (file inputs, no broker): predictions, alarms, bad rows,
stale sensors (fallback, rule, stop), restart resume, summaries, and no torch."""

from __future__ import annotations

import csv
import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from plantml.agent.alarms import AlarmRule, run_alarms
from plantml.agent.config import parse_config
from plantml.agent.service import Service
from plantml.edge.bundle import write_manifest
from tests.bundles import fleet_rows, make_bundle, reference


def write_csv(path: Path, rows: list[dict]) -> Path:
    names = list(dict.fromkeys(k for r in rows for k in r))
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=names)
        writer.writeheader()
        writer.writerows(rows)
    return path


def run(folder: Path, models: list[dict], inputs: list[dict], **extra) -> Service:
    cfg = parse_config(
        {
            "site": "s1",
            "agent_id": "a1",
            "models": models,
            "inputs": inputs,
            "metrics": {"enabled": False},
            **extra,
        },
        folder,
    )
    service = Service(cfg, exit_when_inputs_end=True)
    service.run()
    return service


def outbox(folder: Path, kind: str | None = None) -> list[dict]:
    db = sqlite3.connect(folder / "state" / "agent.db")
    rows = db.execute("SELECT kind, payload FROM outbox ORDER BY id").fetchall()
    db.close()
    return [json.loads(p) for k, p in rows if kind is None or k == kind]


def rejected(folder: Path) -> list[dict]:
    db = sqlite3.connect(folder / "state" / "agent.db")
    keys = ("source", "asset", "model", "column", "reason", "message")
    out = [
        dict(zip(keys, r, strict=True))
        for r in db.execute(
            f"SELECT {', '.join(keys).replace('column', 'column_name')} FROM rejected ORDER BY id"
        )
    ]
    db.close()
    return out


@pytest.fixture
def bundle(tmp_path) -> Path:
    return make_bundle(tmp_path / "bundle", threshold=0.0, seed=3)


def test_predictions_and_alarm_events_equal_the_runtime_and_the_state_machine(tmp_path, bundle):
    rows = fleet_rows(n_assets=3, n=40, seed=2)
    ref = reference(bundle, rows)
    values = np.array([v for _, v in ref.values()])
    raise_at, clear_at = float(np.quantile(values, 0.6)), float(np.quantile(values, 0.4))
    alarm = {"raise": raise_at, "clear": clear_at, "k": 2, "n": 3}
    run(
        tmp_path,
        [{"bundle": "bundle", "alarm": alarm}],
        [{"type": "file", "path": str(write_csv(tmp_path / "rows.csv", rows))}],
    )
    preds = outbox(tmp_path, "prediction")
    assert len(preds) == len(ref)
    for p in preds:
        assert p["value"] == pytest.approx(ref[(p["asset"], p["time"])][1], rel=1e-5, abs=1e-5)
        assert p["alarm"] == (p["value"] >= 0.0)  # the bundle's raw per-window alarm
        assert p["model"]["bundle_sha256"] and p["model"]["version"] == "1" and not p["degraded"]
    rule = AlarmRule(raise_at, clear_at, k=2, n=3)
    expected = []
    for asset in ("u0", "u1", "u2"):
        times = [t for (a, t) in ref if a == asset]
        for e in run_alarms(rule, [float(t) for t in times], [ref[(asset, t)][1] for t in times]):
            expected.append((asset, e.kind, str(int(e.t))))
    got = [(m["asset"], m["event"], m["time"]) for m in outbox(tmp_path, "alarm")]
    assert sorted(got) == sorted(expected) and len(got) >= 4
    assert len({m["id"] for m in preds}) == len(preds)


BAD_LINES = [
    ("this is not json", "not_json"),
    ("42", "bad_payload"),
    ('{"ts": 5, "values": {"a": 1, "b": 2}}', "no_asset"),
    ('{"asset": "u0", "ts": 5, "values": [1, 2]}', "bad_payload"),
    ('{"asset": "u0", "ts": [5], "values": {"a": 1, "b": 2}}', "bad_time"),
    ('{"asset": "u0", "ts": 13, "values": {"a": "abc", "b": 2}}', "bad_value"),
    ('{"asset": "u0", "ts": 14, "values": {"a": 1e300, "b": 2}}', "out_of_range"),
    ('{"asset": "u0", "ts": 3, "values": {"a": 1, "b": 2}}', "time_order"),
    ('{"asset": "u0", "ts": 12, "values": {"a": 1, "b": 2}}', "duplicate"),
    ('{"asset": "zz9", "ts": 5, "values": {"a": 1, "b": 2}}', "unknown_asset"),
    ('{"asset": "u/0", "ts": 5, "values": {"a": 1, "b": 2}}', "bad_asset"),
    ('{"asset": "u0", "ts": 15, "values": {"a": 1}}', "missing_column"),
    ('{"asset": "u0", "ts": 16, "values": {"a": 1, "b": null}}', "missing_value"),
    ('{"asset": "u0", "ts": 17, "values": {"a": [1, 2], "b": 2}}', "bad_value"),
    ('{"asset": "u0", "ts": 18, "values": {"a": true, "b": 2}}', "bad_value"),
    ('{"asset": "u0", "ts": 19, "values": {"a": 1' + "0" * 400 + ', "b": 2}}', "out_of_range"),
    ('{"asset": "u0", "ts": 20, "values": {"a": NaN, "b": 2}}', "bad_value"),
]


def test_malformed_payloads_are_counted_reported_and_the_agent_goes_on(tmp_path, bundle):
    good = fleet_rows(n_assets=1, n=12, seed=4)
    lines = [
        json.dumps(
            {
                "asset": r["unit"],
                "ts": int(r["t"]),
                "values": {"a": float(r["a"]), "b": float(r["b"])},
            }
        )
        for r in good
    ]
    lines += [line for line, _ in BAD_LINES]
    later = fleet_rows(n_assets=1, n=30, seed=5)[20:]  # t = 21..30, after the bad rows
    lines += [
        json.dumps(
            {
                "asset": r["unit"],
                "ts": int(r["t"]),
                "values": {"a": float(r["a"]), "b": float(r["b"])},
            }
        )
        for r in later
    ]
    (tmp_path / "rows.jsonl").write_text("\n".join(lines) + "\n")
    service = run(
        tmp_path, [{"bundle": "bundle", "assets": ["u*"]}], [{"type": "file", "path": "rows.jsonl"}]
    )
    reasons = [r["reason"] for r in rejected(tmp_path)]
    assert sorted(reasons) == sorted(reason for _, reason in BAD_LINES)
    by_reason = {r["reason"]: r for r in rejected(tmp_path)}
    assert (
        by_reason["out_of_range"]["column"] == "a"
        and "max_abs" in by_reason["out_of_range"]["message"]
    )
    assert by_reason["time_order"]["message"].startswith("time goes backwards")
    assert (
        by_reason["unknown_asset"]["asset"] == "zz9"
        and "add it" in by_reason["unknown_asset"]["message"]
    )
    assert by_reason["not_json"]["source"].endswith("rows.jsonl:13")
    published = outbox(tmp_path, "rejected")
    assert sorted(m["reason"] for m in published) == sorted(reasons)
    assert all(m["models"][0]["bundle_sha256"] for m in published)
    # the agent went on: the rows after the bad ones are predicted (the window restarts at no gap)
    times = [int(m["time"]) for m in outbox(tmp_path, "prediction")]
    assert times[-1] == 30 and 10 in times
    counts = service.telemetry.render().decode()
    assert 'plantml_agent_rows_rejected_total{model="",reason="not_json"} 1.0' in counts
    assert 'reason="out_of_range"} 2.0' in counts


def with_fallback(folder: Path) -> Path:
    """A bundle reading a and b whose manifest lists a fallback bundle that reads only a."""
    main = make_bundle(folder / "main", features=("a", "b"), seed=1, threshold=0.0)
    make_bundle(main / "fallbacks" / "without-b", features=("a",), seed=2, threshold=0.0)
    manifest = json.loads((main / "manifest.json").read_text())
    manifest["fallbacks"] = [{"without": ["b"], "path": "fallbacks/without-b"}]
    write_manifest(main, manifest)
    return main


def sensor_outage(n: int = 40, gone: tuple[int, int] = (12, 26)) -> list[dict]:
    rows = fleet_rows(n_assets=1, n=n, seed=6)
    for r in rows:
        if gone[0] <= int(r["t"]) < gone[1]:
            r["b"] = ""
    return rows


def test_stale_sensor_switches_to_the_fallback_and_back(tmp_path):
    main = with_fallback(tmp_path)
    rows = sensor_outage()
    write_csv(tmp_path / "rows.csv", rows)
    deg = {"stale_after": 3, "on_stale": ["fallback", "stop"]}
    run(tmp_path, [{"bundle": "main", "degradation": deg}], [{"type": "file", "path": "rows.csv"}])
    preds = outbox(tmp_path, "prediction")
    by_time = {int(p["time"]): p for p in preds}
    full = [r for r in rows if r["b"] != ""]
    ref_main = reference(main, full)
    ref_fb = reference(
        main / "fallbacks" / "without-b", [{k: v for k, v in r.items() if k != "b"} for r in rows]
    )
    # t 12..14: b missing but not stale yet (last valid at 11): rejected, no prediction
    assert not set(range(12, 15)) & set(by_time)
    assert [r["reason"] for r in rejected(tmp_path)] == ["missing_value"] * 3
    # t 15..: stale (15 - 11 > 3): the fallback serves at once, started from the recent rows
    assert by_time[15]["mode"] == "fallback" and by_time[15]["degraded"] is True
    assert "b stale" in by_time[15]["reason"] and "without b" in by_time[15]["reason"]
    assert by_time[15]["model"]["bundle_sha256"] != preds[0]["model"]["bundle_sha256"]
    for t in range(15, 28):
        assert by_time[t]["mode"] == "fallback"
        assert by_time[t]["value"] == pytest.approx(ref_fb[("u0", str(t))][1], rel=1e-5, abs=1e-5)
    # b is back at 26; the primary refills its window with valid rows only (26, 27, 28) and takes over
    assert by_time[28]["mode"] == "primary" and by_time[28]["degraded"] is False
    for t in [*range(3, 12), *range(28, 41)]:
        assert by_time[t]["value"] == pytest.approx(ref_main[("u0", str(t))][1], rel=1e-5, abs=1e-5)


@pytest.mark.parametrize("mode", ["rule", "stop"])
def test_stale_sensor_with_a_rule_or_stopped(tmp_path, bundle, mode):
    rows = sensor_outage(n=30, gone=(12, 30))
    write_csv(tmp_path / "rows.csv", rows)
    deg = {"stale_after": 3, "on_stale": [mode]}
    if mode == "rule":
        deg["rule"] = [{"column": "a", "above": 5.0}]
    run(
        tmp_path,
        [{"bundle": "bundle", "degradation": deg, "alarm": {"raise": 0.5, "clear": 0.5}}],
        [{"type": "file", "path": "rows.csv"}],
    )
    preds = outbox(tmp_path, "prediction")
    degraded = [p for p in preds if p["degraded"]]
    assert all(int(p["time"]) >= 15 for p in degraded) and all(
        not p["degraded"] for p in preds if int(p["time"]) < 12
    )
    if mode == "rule":
        assert len(degraded) == 30 - 15 + 1
        for p in degraded:
            a = float(next(r["a"] for r in rows if r["t"] == p["time"]))
            assert p["value"] is None and p["output"] == "rule" and p["alarm"] == (a > 5.0)
            assert "rule: alarm if a > 5" in p["reason"]
        events = outbox(tmp_path, "alarm")
        assert any(e["mode"] == "rule" and e["degraded"] for e in events)
    else:
        assert (
            len(degraded) == 1 and degraded[0]["mode"] == "stopped" and degraded[0]["value"] is None
        )
        assert "predictions stopped" in degraded[0]["reason"]


def test_a_restart_resumes_windows_alarms_and_the_file_position(tmp_path, bundle):
    rows = fleet_rows(n_assets=2, n=40, seed=7)
    write_csv(tmp_path / "first.csv", rows[:37])
    ref = reference(bundle, rows)
    alarm = {"raise": float(np.median([v for _, v in ref.values()])), "k": 2, "n": 3}
    models = [{"bundle": "bundle", "alarm": alarm}]
    run(tmp_path, models, [{"type": "file", "path": "first.csv", "name": "replay"}])
    assert len(outbox(tmp_path, "prediction")) > 0
    write_csv(tmp_path / "first.csv", rows)  # the same input grew: resume after row 37
    run(tmp_path, models, [{"type": "file", "path": "first.csv", "name": "replay"}])
    preds = outbox(tmp_path, "prediction")
    assert sorted((p["asset"], p["time"]) for p in preds) == sorted(ref)
    for p in preds:
        assert p["value"] == pytest.approx(ref[(p["asset"], p["time"])][1], rel=1e-5, abs=1e-5)
    whole = tmp_path / "whole"
    whole.mkdir()
    (whole / "bundle").symlink_to(bundle)
    write_csv(whole / "rows.csv", rows)
    run(whole, models, [{"type": "file", "path": "rows.csv"}])
    events = [(m["asset"], m["event"], m["time"]) for m in outbox(tmp_path, "alarm")]
    assert (
        events == [(m["asset"], m["event"], m["time"]) for m in outbox(whole, "alarm")] and events
    )


class CountingSketch:
    """A custom sketch provider (the interface the monitoring sketches implement)."""

    def __init__(self, bundle):
        self.rows = 0
        self.features = bundle.feature_columns

    def update(self, row, prediction):
        self.rows += 1

    def snapshot(self):
        out = {"rows": self.rows, "features": self.features}
        self.rows = 0
        return out


def test_summaries_carry_counts_latency_and_sketches(tmp_path, bundle):
    rows = fleet_rows(n_assets=2, n=10, seed=8)
    write_csv(tmp_path / "rows.csv", rows)
    service = run(tmp_path, [{"bundle": "bundle"}], [{"type": "file", "path": "rows.csv"}])
    service.store = type(service.store)(tmp_path / "state" / "agent.db")
    waiting = len(outbox(tmp_path))
    service.summarize(service.last_summary + 1)
    summary = outbox(tmp_path, "summary")[-1]
    assert summary["counts"]["rows"] == 20 and summary["counts"]["predictions"] == {"primary": 16}
    assert summary["latency"]["inference_seconds"]["n"] == 16
    assert summary["sketches"]["by_condition"]["all"]["predictions"] == 16
    assert summary["model"]["bundle_sha256"] and summary["outbox"]["messages"] == waiting
    spec = "tests.unit.test_agent_engine:CountingSketch"
    other = tmp_path / "custom"
    other.mkdir()
    (other / "bundle").symlink_to(bundle)
    write_csv(other / "rows.csv", rows)
    service = run(
        other,
        [{"bundle": "bundle"}],
        [{"type": "file", "path": "rows.csv"}],
        summary={"sketches": spec},
    )
    assert service.sketches["test-bundle"].snapshot() == {"rows": 20, "features": ["a", "b"]}


FORBIDDEN = ("torch", "pandas", "lightning", "hydra", "omegaconf", "scipy", "wandb", "optuna")


def test_the_agent_imports_no_training_stack(tmp_path, bundle):
    write_csv(tmp_path / "rows.csv", fleet_rows(n_assets=1, n=6))
    code = f"""
import sys
from plantml.agent.cli import main
import plantml.agent.inputs.mqtt, plantml.agent.inputs.opcua, plantml.agent.publisher, plantml.agent.status
(open({str(tmp_path / "agent.yaml")!r}, 'w')
 .write('site: s\\nmodels: [{{bundle: bundle}}]\\ninputs: [{{type: file, path: rows.csv}}]\\nmetrics: {{port: 0}}\\n'))
rc = main(['run', '--config', {str(tmp_path / "agent.yaml")!r}, '--exit-when-inputs-end'])
print(rc, sorted(m for m in {FORBIDDEN!r} if m in sys.modules))
"""
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=tmp_path
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "0 []"
    db = sqlite3.connect(tmp_path / "state" / "agent.db")
    assert db.execute("SELECT COUNT(*) FROM predictions").fetchone()[0] == 4


def test_a_redelivered_row_is_counted_not_reported(tmp_path, bundle):
    from plantml.agent.inputs.base import Record

    write_csv(tmp_path / "rows.csv", fleet_rows(n_assets=1, n=5, seed=9))
    service = run(tmp_path, [{"bundle": "bundle"}], [{"type": "file", "path": "rows.csv"}])
    service.store = type(service.store)(tmp_path / "state" / "agent.db")
    service.engine.store = service.store
    again = Record(
        "u0", "3", {"a": 1.0, "b": 2.0}, "mqtt:plant/s1/u0/telemetry", 0.0, redelivered=True
    )
    backwards = Record("u0", "2", {"a": 1.0, "b": 2.0}, "mqtt:plant/s1/u0/telemetry", 0.0)
    service.engine.process([again, backwards])
    assert [r["reason"] for r in rejected(tmp_path)] == ["time_order"]
    text = service.telemetry.render().decode()
    assert 'reason="redelivered"} 1.0' in text and 'reason="time_order"} 1.0' in text


def test_a_full_outbox_drops_the_oldest_and_says_so(tmp_path, bundle):
    write_csv(tmp_path / "rows.csv", fleet_rows(n_assets=2, n=40, seed=10))
    run(
        tmp_path,
        [{"bundle": "bundle"}],
        [{"type": "file", "path": "rows.csv"}],
        store={"outbox_max_bytes": "8KB"},
        processing={"batch": 10},
    )
    kept = outbox(tmp_path)
    notices = [m for m in kept if m["kind"] == "outbox_dropped"]
    assert notices and notices[-1]["models"][0]["bundle_sha256"]
    predictions = [m for m in kept if m["kind"] == "prediction"]
    # the newest survive, in order; the log still has every prediction
    assert [int(m["time"]) for m in predictions if m["asset"] == "u0"][-1] == 40
    db = sqlite3.connect(tmp_path / "state" / "agent.db")
    dropped = db.execute("SELECT value FROM meta WHERE key = 'dropped'").fetchone()[0]
    assert notices[-1]["dropped_total"] == dropped > 0  # the notice of the last drop
    assert db.execute("SELECT COUNT(*) FROM predictions").fetchone()[0] == 2 * 38
    size = db.execute("SELECT SUM(bytes) FROM outbox").fetchone()[0]
    assert size <= 8000 + 400  # the bound, plus the last notice
