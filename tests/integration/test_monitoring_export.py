"""A trained run exported with its reference profile, then monitored on held-out assets:
plantml-train -> plantml-export -> plantml-edge predict -> plantml-monitor report."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from tests.integration.helpers import TINY, run_cli, run_dirs

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore")]


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    cwd = tmp_path_factory.mktemp("monitor-export")
    run_cli("plantml-train", *TINY, "bootstrap=0", "model.hidden_size=16", cwd=cwd)
    ckpt = run_dirs(cwd, "synthetic_failure")[-1] / "checkpoints" / "best.ckpt"
    run_cli(
        "plantml-export",
        f"ckpt_path={ckpt}",
        "export=fp32",
        f"export_dir={cwd / 'export'}",
        "measure.repeats=10",
        cwd=cwd,
    )
    return cwd, ckpt, cwd / "export" / "synthetic_failure-fp32"


def test_the_bundle_carries_a_bounded_reference_profile(exported):
    from plantml.edge import load_bundle
    from plantml.monitoring.profile import load_profile

    _, _, out = exported
    bundle = load_bundle(out / "bundle")
    profile = load_profile(bundle)
    assert profile.features == bundle.feature_columns
    assert profile.conditions == bundle.conditions["names"] == ["high", "low", "nominal"]
    assert (out / "bundle" / "reference_profile.json").stat().st_size < 60_000
    assert profile.output.kind == "failure" and profile.output.threshold == bundle.threshold
    assert profile.calibrator["method"] == "isotonic"
    assert np.isfinite(profile.null["mu"][:3, :-1]).all() and (profile.null["scale"] >= 1).all()
    assert bundle.task["horizon_unit"] == "h"
    report = json.loads((out / "export_report.json").read_text())
    assert any(n.startswith("reference profile:") for n in report["notes"])


def _held_out(ckpt):
    """The raw rows of the run's held-out test assets, as a device would send them, and events."""
    from plantml.evaluation.checkpoint import load_run
    from plantml.export.profile import split_rows

    _, _, datamodule, _, _ = load_run(ckpt, [])
    data = datamodule.data
    table = data.table
    rows = data.frame[split_rows(data, "test")]
    columns = [table.asset_column, table.time_column, *data.feature_names, table.condition_column]
    inputs = rows[list(dict.fromkeys(columns))].copy()
    stamp = lambda t: t.dt.strftime("%Y-%m-%dT%H:%M:%S")  # noqa: E731
    inputs[table.time_column] = stamp(inputs[table.time_column])
    ev = []
    for kind, column in (
        ("failure", table.failure_column),
        ("maintenance", table.maintenance_column),
    ):
        hit = rows[rows[column] > 0]
        ev.append(
            pd.DataFrame(
                {
                    "asset": hit[table.asset_column],
                    "time": stamp(hit[table.time_column]),
                    "kind": kind,
                }
            )
        )
    return inputs, pd.concat(ev), table


def test_monitor_report_on_held_out_assets_finds_an_injected_drift(exported):
    cwd, ckpt, out = exported
    inputs, events, table = _held_out(ckpt)
    inputs.to_csv(cwd / "rows.csv", index=False)
    events.to_csv(cwd / "events.csv", index=False)
    bundle = str(out / "bundle")
    run_cli(
        "plantml-edge",
        "predict",
        "--bundle",
        bundle,
        "--input",
        str(cwd / "rows.csv"),
        "--output",
        str(cwd / "pred.csv"),
        cwd=cwd,
    )
    common = [
        "--bundle",
        bundle,
        "--predictions",
        str(cwd / "pred.csv"),
        "--events",
        str(cwd / "events.csv"),
        "--chunk",
        "2d",
    ]
    run_cli(
        "plantml-monitor",
        "report",
        "--inputs",
        str(cwd / "rows.csv"),
        *common,
        "--out",
        str(cwd / "clean"),
        cwd=cwd,
    )
    clean = json.loads((cwd / "clean" / "monitor.json").read_text())
    assert not [a for a in clean["alerts"] if a["rule"] == "input_drift"]
    perf = clean["performance"]
    assert perf["kind"] == "failure" and perf["labeled"] > 0
    assert perf["label_delay"]["median"] <= 24 * 3600  # failure-within-24-h labels
    estimated = [
        c["figures"]["estimated_precision"]
        for c in clean["checks"]
        if "estimated_precision" in c["figures"]
    ]
    assert estimated and all(0 <= e <= 1 for e in estimated if e is not None)  # None: no alarms
    # a +3 std bias of bearing_temp while nominal, in the second half of the range
    drifted = inputs.copy()
    times = pd.to_datetime(drifted[table.time_column])
    late = (times > times.min() + (times.max() - times.min()) / 2) & (
        drifted[table.condition_column] == "nominal"
    )
    from plantml.monitoring.profile import load_profile

    profile = load_profile(bundle)
    j = profile.features.index("bearing_temp")
    drifted.loc[late, "bearing_temp"] += (
        3 * profile.std_floor[profile.conditions.index("nominal"), j]
    )
    drifted.to_csv(cwd / "drifted.csv", index=False)
    run_cli(
        "plantml-monitor",
        "report",
        "--inputs",
        str(cwd / "drifted.csv"),
        *common,
        "--out",
        str(cwd / "drift"),
        cwd=cwd,
    )
    result = json.loads((cwd / "drift" / "monitor.json").read_text())
    alerts = [a for a in result["alerts"] if a["rule"] == "input_drift"]
    assert alerts and {a["condition"] for a in alerts} == {"nominal"}
    assert "bearing_temp" in {a["signal"] for a in alerts}
    md = (cwd / "drift" / "monitor.md").read_text()
    assert "input drift" in md.lower() and "bearing_temp" in md
