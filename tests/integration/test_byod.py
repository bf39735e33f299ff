"""Bring your own data end to end through plantml-train, config alone.

Three layouts a new user arrives with: a folder of recordings whose file names carry
fields, with no asset, time or label column (unlabelled anomaly detection); a process
table of independent machine cycles with a failure flag and a label-like column; and a
run-to-failure archive with one file per asset.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from tests.integration.helpers import run_cli, run_dirs

FAST = ["logger=csv", "trainer.max_epochs=2", "callbacks.progress_bar.refresh_rate=0"]


def recordings(folder, n_files: int = 4, rows: int = 240):
    """Vibration recordings, one per file: ``<state><speed>hz.csv``; a fault grows late."""
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(n_files):
        state, speed = ("normal", "faulty")[i % 2], (20, 30)[i // 2 % 2]
        t = np.arange(rows)
        fault = (t > rows * 0.7) * (state == "faulty") * 3.0
        pd.DataFrame(
            {
                "acc_x": np.sin(t * speed / 100) + rng.normal(0, 0.1, rows) + fault,
                "acc_y": np.cos(t * speed / 100) + rng.normal(0, 0.1, rows),
            }
        ).to_csv(folder / f"{state}{speed}hz.csv", index=False)


def test_a_table_run_gets_its_own_name_and_neutral_settings(tmp_path):
    proc = run_cli(
        "plantml-train",
        "data=table",
        "data.path=plant/pumps_2024*.csv",
        "task=anomaly",
        "--cfg",
        "job",
        "--resolve",
        cwd=tmp_path,
    )
    assert "run_name: pumps_2024_anomaly" in proc.stdout
    assert "stride: 1" in proc.stdout and "stride: 2" not in proc.stdout


def test_label_like_column_refused_before_training(tmp_path):
    rng = np.random.default_rng(1)
    n = 600
    failed = (rng.random(n) < 0.04).astype(int)
    pd.DataFrame(
        {
            "cycle": np.arange(n),
            "torque": rng.normal(40, 5, n) + 10 * failed,
            "tool_wear": rng.uniform(0, 250, n),
            "heat_failure": failed * (rng.random(n) < 0.9),
            "machine_failure": failed,
        }
    ).to_csv(tmp_path / "mill.csv", index=False)
    proc = run_cli(
        "plantml-train",
        "data=table",
        "data.path=mill.csv",
        "data.time_column=cycle",
        "data.label_column=machine_failure",
        *FAST,
        cwd=tmp_path,
        expect_ok=False,
    )
    assert proc.returncode == 2
    assert "heat_failure" in proc.stderr and "data.exclude_columns=[heat_failure]" in proc.stderr
    # refused before any training: Hydra's run log only, no checkpoint, no metrics
    (run,) = run_dirs(tmp_path, "mill_failure")
    assert not (run / "checkpoints").exists() and not (run / "metrics.json").exists()


@pytest.mark.slow
def test_unlabelled_recordings_train_an_anomaly_detector(tmp_path):
    recordings(tmp_path / "rec")
    out = tmp_path / "run"
    run_cli(
        "plantml-train",
        "data=table",
        "data.path=rec/*.csv",
        "data.path_fields='{state:w}{speed:d}hz.csv'",  # quoted: braces are Hydra syntax
        "data.time_column=null",
        "data.sampling_rate=100",
        "data.label_column=null",
        "data.condition_column=speed",
        "data.split_by.method=head",
        "data.split_by.head_fraction=0.5",
        "data.split_by.val_fraction=0.2",
        "data.window.length=20",
        "task=anomaly",
        "model=conv_ae",
        f"paths.output_dir={out}",
        *FAST,
        cwd=tmp_path,
    )
    metrics = json.loads((out / "metrics.json").read_text())
    assert "test/f1" not in metrics and "test/alarm_rate" in metrics  # no labels: no F1
    assert metrics["data"]["features"] == ["acc_x", "acc_y"]
    first = pd.read_csv(out / "first_alarms_test.csv")
    assert sorted(first["asset"]) == ["faulty20hz", "faulty30hz", "normal20hz", "normal30hz"]
    # the fault grows in the faulty recordings: they alarm, and more than the normal ones
    alarms = first.set_index("asset")["alarms"]
    assert alarms[["faulty20hz", "faulty30hz"]].min() > alarms[["normal20hz", "normal30hz"]].max()
    # paths.output_dir takes the run log and Hydra's record too
    assert (out / "train.log").is_file() and (out / ".hydra" / "config.yaml").is_file()
    assert set(metrics["by_condition"]["test"]) == {"20", "30"}


@pytest.mark.slow
def test_run_to_failure_archive_one_file_per_asset(tmp_path):
    folder = tmp_path / "bearings"
    folder.mkdir()
    rng = np.random.default_rng(2)
    for b in range(8):
        n = int(rng.integers(80, 120))
        wear = np.arange(n) / n
        pd.DataFrame(
            {
                "hour": np.arange(n),
                "rms": 1 + 3 * wear**2 + rng.normal(0, 0.05, n),
                "kurtosis": 3 + 2 * wear + rng.normal(0, 0.1, n),
                "failure": (np.arange(n) == n - 1).astype(int),
            }
        ).to_csv(folder / f"bearing{b}.csv", index=False)
    out = tmp_path / "run"
    run_cli(
        "plantml-train",
        "data=table",
        "data.path=bearings/*.csv",
        "data.time_column=hour",
        "data.label_kind=failure",
        "task=rul",
        "data.window.length=10",
        f"paths.output_dir={out}",
        *FAST,
        cwd=tmp_path,
    )
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["val/n"] > 0 and metrics["val/rmse"] < 200
    pred = pd.read_csv(out / "predictions_val.csv")
    assert pred["asset"].str.startswith("bearing").all()
