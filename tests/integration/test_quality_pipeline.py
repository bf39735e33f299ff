"""Model quality end to end: plantml-cv, classical models trained by plantml-train and run by
plantml-edge (parity with scikit-learn), conformal intervals and calibration in bundles."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from plantml.data.sources.machining import machining_table
from plantml.evaluation.calibration import apply_scaling
from tests.conftest import make_fleet
from tests.integration.helpers import BIN, run_cli

pytestmark = pytest.mark.slow
QUIET = ["logger=csv", "callbacks.progress_bar.refresh_rate=0", "bootstrap=0"]


def _fleet_csv(tmp_path, anomalies: bool = False):
    frame = make_fleet(n_assets=12, rows=(60, 90), seed=5).frame
    if anomalies:  # a level shift on s0 in the last 15 rows of every other asset
        tail = frame.groupby("unit").cumcount(ascending=False) < 15
        frame["anomaly"] = (tail & (frame["unit"] % 2 == 0)).astype(int)
        frame.loc[frame["anomaly"] == 1, "s0"] += 3.0
        frame = frame.drop(columns=["failure"])
    path = tmp_path / "fleet.csv"
    frame.to_csv(path, index=False)
    return path


def _train_on_fleet(tmp_path, csv, run, *extra):
    """plantml-train on the generated fleet CSV (unit, cycle, sensors) with ``extra``."""
    run_cli(
        "plantml-train",
        "data=table",
        f"data.path={csv}",
        "data.asset_column=unit",
        "data.time_column=cycle",
        "data.window.length=5",
        f"paths.output_dir={run}",
        *extra,
        *QUIET,
        cwd=tmp_path,
    )
    return json.loads((run / "metrics.json").read_text())


def _export_and_predict(tmp_path, run, name="bundle"):
    run_cli(
        "plantml-export",
        f"ckpt_path={run}",
        "export=int8",
        f"export_dir={tmp_path}/export",
        f"name={name}",
        "measure.repeats=5",
        cwd=tmp_path,
    )
    bundle = tmp_path / "export" / name / "bundle"
    return bundle, json.loads((bundle / "manifest.json").read_text())


def _edge(tmp_path, bundle, csv):
    out = tmp_path / f"{bundle.parent.name}.csv"
    run_cli(
        "plantml-edge",
        "predict",
        "--bundle",
        str(bundle),
        "--input",
        str(csv),
        "--output",
        str(out),
        cwd=tmp_path,
    )
    return pd.read_csv(out)


def _joined(run, edge, column):
    pred = pd.concat([pd.read_csv(run / f"predictions_{s}.csv") for s in ("val", "test")])
    pred["time"] = pred["time"].astype(float)
    edge["time"] = edge["time"].astype(float)
    both = pred.merge(edge, on=["asset", "time"], how="inner", suffixes=("_train", ""))
    assert len(both) == len(pred)  # the device scored every window training scored
    return both["prediction"].to_numpy(), both[column].to_numpy(), both


def test_plantml_cv_two_folds(tmp_path):
    out = tmp_path / "cv"
    run_cli(
        "plantml-cv",
        "--folds",
        "2",
        "--out",
        str(out),
        "experiment=synthetic_failure",
        "task=rul",
        "data.n_assets=10",
        "data.days=40",
        "trainer.max_epochs=1",
        "trainer.limit_train_batches=2",
        "truncated.cuts=3",
        *QUIET,
        cwd=tmp_path,
    )
    result = json.loads((out / "cv.json").read_text())
    assert result["folds"] == 2 and len(result["per_fold"]) == 2
    assert result["summary"]["val/rmse"]["folds"] == 2
    val_assets = [
        json.loads((out / f"fold{i}" / "metrics.json").read_text())["val/assets"] for i in range(2)
    ]
    assert result["pooled"]["val"]["assets"] == sum(val_assets)  # every unit scored once
    assert result["pooled"]["val_truncated"]["units"] == sum(val_assets)
    assert "val_truncated/rmse" in result["summary"]
    proc = run_cli("plantml-cv", "--folds", "2", "--out", str(out), "task=rul", cwd=tmp_path)
    assert "val/rmse" in proc.stdout  # the second call reads the folds back, trains nothing
    bad = run_cli(
        "plantml-cv",
        "--folds",
        "2",
        "--out",
        str(out),
        "data.split_by.fold=1",
        cwd=tmp_path,
        expect_ok=False,
    )
    assert bad.returncode == 2 and "sets data.split_by.folds and fold itself" in bad.stderr


def test_gbm_rul_with_intervals_from_training_to_the_edge(tmp_path):
    csv = _fleet_csv(tmp_path)
    run = tmp_path / "run"
    metrics = _train_on_fleet(
        tmp_path,
        csv,
        run,
        "task=rul",
        "model=gbm",
        "model.max_iter=80",
        "data.split_by.test_fraction=0.25",
        "conformal.level=0.8",
        "conformal.lead_time=10",
        "truncated.cuts=4",
    )
    assert metrics["epochs"] == 1 and metrics["model/parameters"] > 80
    assert 0.5 < metrics["test/interval_coverage"] <= 1.0
    assert metrics["test_truncated/cuts"] == 4
    assert (run / "alarm_tradeoff_test.png").is_file()
    bundle, manifest = _export_and_predict(tmp_path, run)
    assert manifest["model"]["exporter"] == "trees"
    interval = manifest["task"]["interval"]
    assert interval["level"] == 0.8 and interval["alarm_lead_time"] == 10.0
    sk, edge, both = _joined(run, _edge(tmp_path, bundle, csv), "rul")
    np.testing.assert_allclose(edge, sk, rtol=1e-5, atol=1e-3)  # scikit-learn == the bundle
    assert (both["rul_low"] <= both["rul"]).all() and (both["rul_high"] >= both["rul"]).all()
    np.testing.assert_array_equal(both["alarm"], (both["rul_low"] <= 10.0).astype(int))


def test_process_table_gbm_calibrated_in_the_bundle(tmp_path):
    csv = tmp_path / "cycles.csv"
    machining_table(3000, seed=1).to_csv(csv, index=False)
    run = tmp_path / "run"
    run_cli(
        "plantml-train",
        "experiment=process_table",
        f"data.path={csv}",
        "data.condition_column=type",
        "model.max_iter=80",
        "calibration.method=platt",
        f"paths.output_dir={run}",
        *QUIET,
        cwd=tmp_path,
    )
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["test/ece_calibrated"] < metrics["test/ece"] + 0.02
    assert (run / "reliability_test.png").is_file()
    bundle, manifest = _export_and_predict(tmp_path, run)
    cal = manifest["task"]["calibration"]
    assert cal["folded_into_graph"] and cal["method"] == "platt"
    # one file, one asset (no asset column): the device file carries the row counter as its
    # time and is named like the training file, whose stem is the asset
    assert manifest["input"]["asset_column"] is None
    device = tmp_path / "device" / csv.name
    device.parent.mkdir()
    pd.read_csv(csv).assign(time=lambda f: np.arange(len(f))).to_csv(device, index=False)
    sk, edge, both = _joined(run, _edge(tmp_path, bundle, device), "failure_probability")
    np.testing.assert_allclose(edge, apply_scaling(sk, cal["a"], cal["b"]), rtol=1e-4, atol=1e-5)
    threshold = manifest["task"]["threshold"]
    np.testing.assert_array_equal(both["alarm"], (edge >= threshold).astype(int))


def test_iforest_anomaly_from_training_to_the_edge(tmp_path):
    csv = _fleet_csv(tmp_path, anomalies=True)
    run = tmp_path / "run"
    metrics = _train_on_fleet(
        tmp_path,
        csv,
        run,
        "data.label_column=anomaly",
        "data.label_kind=anomaly",
        "task=anomaly",
        "model=iforest",
        "model.n_estimators=50",
        "data.split_by.test_fraction=0.25",
    )
    assert metrics["test/auroc"] > 0.8
    bundle, manifest = _export_and_predict(tmp_path, run)
    assert manifest["task"]["threshold"] is not None
    sk, edge, _ = _joined(run, _edge(tmp_path, bundle, csv), "anomaly_score")
    np.testing.assert_allclose(edge, sk, rtol=1e-5, atol=1e-6)


def test_classical_models_refuse_gradient_recipes(tmp_path):
    csv = _fleet_csv(tmp_path)
    run = tmp_path / "run"
    _train_on_fleet(tmp_path, csv, run, "task=rul", "model=gbm", "model.max_iter=10")
    proc = run_cli(
        "plantml-export",
        f"ckpt_path={run}",
        "export=pruned_int8",
        f"export_dir={tmp_path}/export",
        cwd=tmp_path,
        expect_ok=False,
    )
    assert proc.returncode == 2 and "does not have; use export=fp32 or export=int8" in proc.stderr
    assert BIN.is_dir()
