"""plantml-ingest and plantml-monitor on a small bundle with a reference profile, from files."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from plantml.cli import ingest as ingest_cli
from plantml.cli import monitor as monitor_cli
from plantml.monitoring.scenarios import Drift
from tests.bundles import make_bundle
from tests.monitoring_data import CONDITIONS, FEATURES, fleet

BIN = Path(sys.executable).parent


@pytest.fixture
def bundle(tmp_path, monitoring_profile) -> Path:
    conditions = {
        "mode": "column",
        "column": "regime",
        "names": CONDITIONS,
        "categories": CONDITIONS,
    }
    task = {"output_name": "failure_probability", "horizon": 10, "horizon_unit": None}
    return make_bundle(
        tmp_path / "bundle",
        features=FEATURES,
        conditions=conditions,
        profile=monitoring_profile,
        threshold=0.5,
        task=task,
    )


def write_inputs(path: Path, profile, drift_from: int | None) -> Path:
    """Eight assets, 150 cycles each; sensor c of condition 'nominal' biased from cycle drift_from."""
    x, codes, runs = fleet(8, 150, seed=21)
    cycle = np.tile(np.arange(150), 8)
    if drift_from is not None:
        late = cycle >= drift_from
        shifted, _ = Drift("bias", 2, 1.5, condition=1).apply(
            profile, 0, x[late], codes[late], runs[late], np.random.default_rng(0)
        )
        x[late] = shifted
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["unit", "t", *FEATURES, "regime"])
        for i in range(len(x)):
            w.writerow([f"u{runs[i]}", cycle[i], *np.round(x[i], 4), CONDITIONS[codes[i]]])
    return path


def write_predictions(path: Path) -> tuple[Path, Path]:
    """Asset u0 fails at cycle 100 (alarms from 94 on, one false alarm at 20); others run on."""
    rows = []
    for a in range(3):
        for t in range(0, 150, 2):
            alarm = int(a == 0 and (94 <= t < 100 or t == 20))
            rows.append([f"u{a}", t, CONDITIONS[t % 3], 0.9 if alarm else 0.1, alarm])
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["asset", "time", "condition", "failure_probability", "alarm"])
        w.writerows(rows)
    events = path.with_name("events.csv")
    events.write_text("asset,time,kind\nu0,100,failure\nu1,60,maintenance\n")
    return path, events


def test_report_from_files_tells_where_inputs_drift(tmp_path, bundle, monitoring_profile, capsys):
    inputs = write_inputs(tmp_path / "rows.csv", monitoring_profile, drift_from=80)
    preds, events = write_predictions(tmp_path / "pred.csv")
    out = tmp_path / "report"
    code = monitor_cli.main(
        [
            "report",
            "--bundle",
            str(bundle),
            "--inputs",
            str(inputs),
            "--predictions",
            str(preds),
            "--events",
            str(events),
            "--chunk",
            "10",
            "--out",
            str(out),
            "--baseline",
        ]
    )
    assert code == 0, capsys.readouterr().err
    result = json.loads((out / "monitor.json").read_text())
    assert result["chunks"] == 15 and result["rows"] == 1200
    drift_alerts = [a for a in result["alerts"] if a["rule"] == "input_drift"]
    assert drift_alerts and {(a["condition"], a["signal"]) for a in drift_alerts} <= {
        ("nominal", "c"),
        ("nominal", "multivariate"),
    }
    first = min(drift_alerts, key=lambda a: a["opened"])
    assert 80 <= first["opened"] <= 110 and first["since"] >= 70
    assert first["report"] == str((out / "monitor.md").resolve())
    assert not any(c["verdict"]["input_drift"] for c in result["checks"] if c["time"] <= 80)
    perf = result["performance"]
    assert perf["kind"] == "failure" and perf["failures"][0]["lead_time"] == 6.0
    assert perf["overall"]["tp"] == 3 and perf["overall"]["fp"] == 1
    assert perf["censored"] > 0  # u1's maintenance at 60
    md = (out / "monitor.md").read_text()
    assert "**Input drift**" in md and "'nominal'" in md and "Label delay" in md
    for name in ("drift_heatmap.png", "condition_mix.png", "outputs.png", "performance.png"):
        assert (out / name).stat().st_size > 5_000, name


def test_ingest_files_then_report_and_watch_from_the_store(
    tmp_path, bundle, monitoring_profile, capsys
):
    inputs = write_inputs(tmp_path / "rows.csv", monitoring_profile, drift_from=60)
    preds, events = write_predictions(tmp_path / "pred.csv")
    db = tmp_path / "monitor.db"
    args = [
        "files",
        "--store",
        str(db),
        "--bundle",
        str(bundle),
        "--inputs",
        str(inputs),
        "--chunk",
        "10",
        "--predictions",
        str(preds),
        "--events",
        str(events),
    ]
    assert ingest_cli.main(args) == 0
    assert "15 sketches of input rows" in capsys.readouterr().out
    assert ingest_cli.main(args) == 0  # a second time stores nothing new
    assert "stored 0 predictions, 0 events, 0 sketches" in capsys.readouterr().out
    out = tmp_path / "from-store"
    assert (
        monitor_cli.main(["report", "--bundle", str(bundle), "--store", str(db), "--out", str(out)])
        == 0
    )
    result = json.loads((out / "monitor.json").read_text())
    assert result["chunks"] == 15
    assert {
        (a["condition"], a["signal"]) for a in result["alerts"] if a["rule"] == "input_drift"
    } >= {("nominal", "c")}
    # watch: one check of everything stored so far, alerts into the store, then nothing new
    watch = [
        "watch",
        "--bundle",
        str(bundle),
        "--store",
        str(db),
        "--out",
        str(tmp_path / "watch"),
        "--once",
    ]
    assert monitor_cli.main(watch) == 0
    assert (tmp_path / "watch" / "check-000001" / "monitor.md").is_file()
    from plantml.monitoring.store import Store

    stored = Store(db).alert_records()
    assert any(a["rule"] == "input_drift" and a["condition"] == "nominal" for a in stored)
    assert monitor_cli.main(watch) == 0
    assert not (tmp_path / "watch" / "check-000002").exists()
    state = Store(db).load_state(stored[0].get("details") and result["bundle"]["bundle_sha"])
    assert state["summary_watermark"] == 15 and state["state"]["checks"] == 1


def test_cli_errors_are_one_line(tmp_path, bundle, capsys):
    plain = make_bundle(tmp_path / "plain")
    assert monitor_cli.main(["report", "--bundle", str(plain), "--predictions", "x.csv"]) == 2
    assert "no reference profile" in capsys.readouterr().err
    assert monitor_cli.main(["report", "--bundle", str(bundle)]) == 2
    assert "nothing to monitor" in capsys.readouterr().err
    assert (
        monitor_cli.main(["report", "--bundle", str(bundle), "--inputs", "x.csv", "--chunk", "1h"])
        == 2
    )
    err = capsys.readouterr().err
    assert err.startswith("error:") and err.count("\n") == 1
    assert (
        monitor_cli.main(["report", "--bundle", str(bundle), "--since", "someday", "--inputs", "x"])
        == 2
    )
    assert "is not a time" in capsys.readouterr().err
    assert (
        ingest_cli.main(["files", "--store", str(tmp_path / "s.db"), "--predictions", "p.csv"]) == 2
    )
    assert "need --bundle" in capsys.readouterr().err
    assert (
        monitor_cli.main(
            [
                "watch",
                "--bundle",
                str(bundle),
                "--store",
                str(tmp_path / "s.db"),
                "--sink",
                "ftp://x",
                "--once",
            ]
        )
        == 2
    )
    assert "unknown alert sink" in capsys.readouterr().err


def test_entry_points_are_installed():
    r = subprocess.run(
        [str(BIN / "plantml-monitor"), "rules"], capture_output=True, text=True, timeout=60
    )
    assert r.returncode == 0 and "metric: input_drift" in r.stdout
    r = subprocess.run(
        [str(BIN / "plantml-ingest"), "--help"], capture_output=True, text=True, timeout=60
    )
    assert r.returncode == 0 and "mqtt" in r.stdout and "files" in r.stdout


def test_report_from_agent_summaries(tmp_path, bundle, monitoring_profile, capsys):
    """The agent's periodic summaries (JSON lines) carry merged-able sketches: one chunk each."""
    from plantml.edge import load_bundle
    from plantml.monitoring.sketch import ProfileSketch

    sha = load_bundle(bundle).manifest["manifest_sha256"]
    x, codes, runs = fleet(6, 200, seed=8)
    late, _ = Drift("bias", 0, 2.0, condition=0).apply(
        monitoring_profile, 0, x, codes, runs, np.random.default_rng(0)
    )
    lines = []
    for i in range(6):
        part = slice(200 * i, 200 * (i + 1))
        rows = late[part] if i >= 3 else x[part]
        sketch = ProfileSketch(monitoring_profile).update(rows, codes[part])
        payload = {
            "id": f"s{i}",
            "agent": "edge-1",
            "model": {"name": "test-bundle", "version": "1", "bundle_sha256": sha},
            "period": {"start": 60.0 * i, "end": 60.0 * (i + 1)},
            "counts": {"rows": 200},
            "sketches": {"kind": "plantml-drift", "rows": 200, "sketch": sketch.to_dict()},
        }
        lines.append(json.dumps(payload))
    (tmp_path / "summaries.jsonl").write_text("\n".join(lines) + "\n")
    out = tmp_path / "r"
    args = ["report", "--bundle", str(bundle), "--summaries", str(tmp_path / "summaries.jsonl")]
    assert monitor_cli.main([*args, "--out", str(out)]) == 0, capsys.readouterr().err
    result = json.loads((out / "monitor.json").read_text())
    assert result["chunks"] == 6 and result["rows"] == 1200
    alerts = [a for a in result["alerts"] if a["rule"] == "input_drift"]
    assert alerts and alerts[0]["condition"] == "low" and alerts[0]["opened"] >= 240.0
    # --since keeps the last three periods only (placed by their end)
    assert monitor_cli.main([*args, "--since", "200", "--out", str(tmp_path / "late")]) == 0
    assert json.loads((tmp_path / "late" / "monitor.json").read_text())["chunks"] == 3


def test_the_agent_sends_drift_sketches_when_the_bundle_has_a_profile(tmp_path, bundle):
    from plantml.agent.summary import ConditionCounts, default_sketches
    from plantml.edge import load_bundle
    from plantml.monitoring.agent_sketch import DriftSketch

    profiled = load_bundle(bundle)
    assert isinstance(default_sketches(profiled), DriftSketch)
    plain = load_bundle(make_bundle(tmp_path / "plain"))
    assert isinstance(default_sketches(plain), ConditionCounts)
