"""C-MAPSS: tiny generated files in the official format, and the real FD00x train files."""

from __future__ import annotations

import gzip
import json

import numpy as np
import pandas as pd
import pytest

from plantml.data.sources.cmapss import CMAPSSSource
from plantml.errors import DataError
from tests.integration.helpers import metrics, run_cli, run_dirs

CYCLES = (60, 90)


def write_cmapss(root, subset="FD001", units=12, test_units=5, seed=0, gz=False):
    """Files in the official layout: train to failure, test cut short, RUL truth."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)

    def rows(unit, n, cut=None):
        out = []
        for cycle in range(1, (cut or n) + 1):
            wear = cycle / n
            settings = [rng.normal(0, 0.002), rng.normal(0, 0.0003), 100.0]
            sensors = [
                518.67
                if s in (1, 5, 10, 16, 18, 19)
                else 100 * s + 5 * wear * (s % 3 + 1) + rng.normal(0, 0.1)
                for s in range(1, 22)
            ]
            out.append(" ".join(f"{v:.4f}" for v in [unit, cycle, *settings, *sensors]) + " ")
        return out

    train = [line for u in range(1, units + 1) for line in rows(u, int(rng.integers(*CYCLES)))]
    test, truth = [], []
    for u in range(1, test_units + 1):
        n = int(rng.integers(*CYCLES))
        cut = int(rng.integers(10, n - 5))
        test += rows(u, n, cut)
        truth.append(n - cut)
    text = "\n".join(train) + "\n"
    if gz:
        (root / f"train_{subset}.txt.gz").write_bytes(gzip.compress(text.encode()))
    else:
        (root / f"train_{subset}.txt").write_text(text)
    return test, truth


def add_test_files(root, test, truth, subset="FD001"):
    (root / f"test_{subset}.txt").write_text("\n".join(test) + "\n")
    (root / f"RUL_{subset}.txt").write_text("\n".join(map(str, truth)) + "\n")


def test_reader_columns_rul_and_gzip(tmp_path):
    write_cmapss(tmp_path, "FD003", gz=True)
    table = CMAPSSSource(tmp_path, "FD003").load("train")
    assert table.frame.columns[:5].tolist() == [
        "unit",
        "cycle",
        "op_setting_1",
        "op_setting_2",
        "op_setting_3",
    ]
    assert len(table.sensor_columns) == 21
    last = table.frame.groupby("unit")["cycle"].idxmax()
    assert table.frame.loc[last, "failure"].eq(1).all() and table.frame["failure"].sum() == 12


def test_missing_test_file_is_a_clear_error(tmp_path):
    write_cmapss(tmp_path)
    with pytest.raises(DataError, match=r"test_FD001.txt\[.gz\] not found .*data.split=val"):
        CMAPSSSource(tmp_path).load("test")
    with pytest.raises(DataError, match="does not exist"):
        CMAPSSSource(tmp_path / "nope").load("train")


def test_test_rul_counts_back_from_the_truth(tmp_path):
    test, truth = write_cmapss(tmp_path)
    add_test_files(tmp_path, test, truth)
    frame = CMAPSSSource(tmp_path).load("test").frame
    last = frame.groupby("unit").tail(1)
    np.testing.assert_array_equal(last["rul"].to_numpy(), truth)
    first = frame.groupby("unit").head(1)
    np.testing.assert_array_equal(
        first["rul"].to_numpy(), np.array(truth) + last["cycle"].to_numpy() - 1
    )


@pytest.mark.slow
def test_cmapss_rul_train_then_eval_on_official_test(tmp_path):
    root = tmp_path / "cmapss"
    test, truth = write_cmapss(root)
    args = [
        "experiment=cmapss_rul",
        f"data.root={root}",
        "logger=csv",
        "trainer.max_epochs=2",
        "model.hidden_size=16",
        "callbacks.progress_bar.refresh_rate=0",
    ]
    run_cli("plantml-train", *args, cwd=tmp_path)
    (run,) = run_dirs(tmp_path, "cmapss_rul_FD001")
    m = metrics(run)
    assert m["val/rmse"] > 0 and "val/score" in m and "test/rmse" not in m
    features = json.loads((run / "lineage.json").read_text())["data"]["features"]
    assert len(features) == 15 and "sensor_1" not in features  # constant sensors were dropped
    ckpt = run / "checkpoints/best.ckpt"
    proc = run_cli(
        "plantml-eval", f"ckpt_path={ckpt}", "data.split=test", cwd=tmp_path, expect_ok=False
    )
    assert proc.returncode == 2 and "test_FD001.txt[.gz] not found" in proc.stderr
    add_test_files(root, test, truth)
    run_cli("plantml-eval", f"ckpt_path={ckpt}", "data.split=test", cwd=tmp_path)
    ev = run_dirs(tmp_path, "eval")[-1]
    m = metrics(ev)
    assert m["test/n"] == len(truth)  # the last window of each test unit
    assert m["test/rmse"] > 0 and m["test/score"] > 0
    predictions = pd.read_csv(ev / "predictions_test.csv")
    assert predictions["target"].tolist() == truth  # one row per test unit, in unit order
    assert (ev / "rul_trajectories_test.png").is_file() and (
        run / "rul_trajectories_val.png"
    ).is_file()


@pytest.mark.real_data
@pytest.mark.parametrize(
    "subset,conditions", [("FD001", 1), ("FD002", 6), ("FD003", 1), ("FD004", 6)]
)
def test_real_cmapss_subsets(shared_data, subset, conditions):
    from plantml.data.pipeline import DataPipeline

    pipeline = DataPipeline(
        CMAPSSSource(shared_data / "cmapss", subset),
        cleaning={"drop_constant": {"dominant_fraction": 0.98}},
        split_by={"method": "asset", "val_fraction": 0.2, "test_fraction": 0.0},
        scaling={"per_condition": True},
        window={"length": 30},
        target={"kind": "rul", "rul_cap": 125},
    )
    data = pipeline.prepare()
    assert len(data.condition_names) == conditions
    assert data.windows["train"].targets.max() == 125
    counts = np.bincount(data.windows["train"].conditions, minlength=conditions)
    assert (counts > 0).all()
    if subset == "FD001":
        assert len(data.feature_names) == 14
