"""Bring your own data: the layouts a new user arrives with, from config alone.

A folder of recordings (one asset per file, fields in file names), tables with no
time or no asset column, odd time strings, label-like columns, merges across files,
long gaps, and the head split by fraction or time.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from plantml.data.cleaning import clean
from plantml.data.leakage import find_label_like
from plantml.data.sources.path_fields import compile_pattern, path_fields
from plantml.data.sources.table import TableSource
from plantml.data.splits import SPLIT_CODES, split_rows
from plantml.errors import ConfigError, DataError


def recording(n: int, seed: int, t0: float = 0.0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"t": t0 + np.arange(n, dtype=float), "vib": rng.normal(seed, 1, n)})


# -- assets from files --------------------------------------------------------------------------
def test_each_file_is_its_own_asset_by_default(tmp_path):
    for i in range(3):  # three recordings sharing the same time axis
        recording(20, i).to_csv(tmp_path / f"run_{i}.csv", index=False)
    table = TableSource(str(tmp_path / "*.csv"), time_column="t", label_column=None).load()
    assert sorted(table.frame[table.asset_column].unique()) == ["run_0", "run_1", "run_2"]
    cleaned, report = clean(table)
    assert report.steps["dedupe"]["duplicate_rows"] == 0  # nothing averaged across files
    assert len(cleaned.frame) == 60


def test_files_in_subfolders_keep_their_folder_in_the_asset_name(tmp_path):
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        recording(5, 0).to_csv(tmp_path / folder / "1.csv", index=False)
    table = TableSource(str(tmp_path / "*" / "*.csv"), time_column="t", label_column=None).load()
    assert sorted(table.frame["asset"].unique()) == ["a/1", "b/1"]


def test_the_same_asset_and_time_in_two_files_is_an_error(tmp_path):
    for i in range(2):
        recording(10, i).assign(pump="P1").to_csv(tmp_path / f"{i}.csv", index=False)
    source = TableSource(
        str(tmp_path / "*.csv"), asset_column="pump", time_column="t", label_column=None
    )
    with pytest.raises(DataError, match=r"more than one file.*asset_from=file"):
        source.load()
    single = TableSource(
        str(tmp_path / "*.csv"), asset_from="single", time_column="t", label_column=None
    )
    with pytest.raises(DataError, match="more than one file"):
        single.load()
    # asset_from=file keeps them apart: <file>/<asset column value>
    table = TableSource(
        str(tmp_path / "*.csv"),
        asset_column="pump",
        asset_from="file",
        time_column="t",
        label_column=None,
    ).load()
    assert sorted(table.frame["pump"].unique()) == ["0/P1", "1/P1"]


def test_a_large_dedupe_is_a_warning_in_the_results():
    frame = pd.DataFrame({"asset": "a", "t": np.repeat(np.arange(50.0), 2), "x": np.arange(100.0)})
    from plantml.data.table import SensorTable

    table = SensorTable(frame=frame, asset_column="asset", time_column="t", sensor_columns=["x"])
    _, report = clean(table)
    assert report.steps["dedupe"]["duplicate_rows"] == 100
    assert len(report.warnings) == 1 and "asset_from=file" in report.warnings[0]


# -- fields from paths --------------------------------------------------------------------------
def test_path_fields_become_typed_columns_and_not_features(tmp_path):
    for state, speed, load in (("normal", 30, 0), ("outer", 30, 2), ("inner", 45, 2)):
        recording(8, speed).to_csv(tmp_path / f"{state}{speed}hz{load}.csv", index=False)
    source = TableSource(
        str(tmp_path / "*.csv"),
        path_fields="{state:w}{speed:d}hz{load:d}.csv",
        time_column="t",
        label_column=None,
        condition_column="load",
    )
    table = source.load()
    frame = table.frame
    assert frame["speed"].dtype.kind == "i" and set(frame["load"]) == {0, 2}
    assert set(frame["state"]) == {"normal", "outer", "inner"}
    assert table.sensor_columns == ["vib"]  # fields are roles or labels, never default inputs
    assert table.frame["asset"].nunique() == 3


def test_path_field_asset_and_split_folders(tmp_path):
    for split, t0 in (("train", 0.0), ("test", 100.0)):
        (tmp_path / split).mkdir()
        for a in ("p1", "p2"):
            recording(6, 1, t0).to_csv(tmp_path / split / f"{a}_{split}.csv", index=False)
    table = TableSource(
        str(tmp_path / "*" / "*.csv"),
        path_fields="{split}/{asset}_{tag}.csv",
        time_column="t",
        label_column=None,
    ).load()
    assert set(table.frame["asset"]) == {"p1", "p2"} and set(table.frame["split"]) == {
        "train",
        "test",
    }


def test_a_file_that_does_not_match_the_pattern_is_named(tmp_path):
    recording(5, 0).to_csv(tmp_path / "normal30hz0.csv", index=False)
    recording(5, 0).to_csv(tmp_path / "notes.csv", index=False)
    source = TableSource(
        str(tmp_path / "*.csv"),
        path_fields="{state:w}{speed:d}hz{load:d}.csv",
        time_column="t",
        label_column=None,
    )
    with pytest.raises(DataError, match=r"notes\.csv.*does not match"):
        source.load()


@pytest.mark.parametrize("pattern", ["no_fields.csv", "{a}/{a}.csv", "{a.csv", "{a}}.csv"])
def test_bad_path_field_patterns(pattern):
    with pytest.raises(ConfigError, match="path_fields"):
        compile_pattern(pattern)


def test_path_fields_parse_the_end_of_the_path():
    from pathlib import Path

    fields = path_fields("{fault}_{size:f}in_{load:d}hp.mat", [Path("/d/IR_0.007in_2hp.mat")])
    assert fields == [{"fault": "IR", "size": 0.007, "load": 2}]


# -- no time column, time formats ---------------------------------------------------------------
def test_no_time_column_uses_the_row_order_in_each_file(tmp_path):
    for i in range(2):
        pd.DataFrame({"x": np.arange(5.0) + i}).to_csv(tmp_path / f"{i}.csv", index=False)
    table = TableSource(str(tmp_path / "*.csv"), time_column=None, label_column=None).load()
    np.testing.assert_array_equal(table.frame["time"], [0, 1, 2, 3, 4] * 2)
    rate = TableSource(
        str(tmp_path / "*.csv"), time_column=None, sampling_rate=4.0, label_column=None
    ).load()
    np.testing.assert_allclose(rate.frame["time"][:3], [0, 0.25, 0.5])


def test_time_formats(tmp_path):
    path = tmp_path / "t.csv"
    pd.DataFrame({"ts": ["01.02.2024 10:00", "01.02.2024 11:00"], "x": [1.0, 2.0]}).to_csv(
        path, index=False
    )
    table = TableSource(
        str(path), time_column="ts", time_format="%d.%m.%Y %H:%M", label_column=None
    ).load()
    assert table.frame["ts"].iloc[1] == pd.Timestamp("2024-02-01 11:00")
    pd.DataFrame({"ts": [1_700_000_000_000, 1_700_000_060_000], "x": [1.0, 2.0]}).to_csv(
        path, index=False
    )
    table = TableSource(str(path), time_column="ts", time_format="unix_ms", label_column=None)
    assert table.load().frame["ts"].iloc[1] == pd.Timestamp("2023-11-14 22:14:20")


def test_an_unparseable_time_names_the_row(tmp_path):
    path = tmp_path / "t.csv"
    pd.DataFrame({"ts": ["01.02.2024 10:00", "soon", "01.02.2024 12:00"], "x": [1.0] * 3}).to_csv(
        path, index=False
    )
    source = TableSource(
        str(path), time_column="ts", time_format="%d.%m.%Y %H:%M", label_column=None
    )
    with pytest.raises(DataError, match=r"'soon' on data row 2.*time_format"):
        source.load()


def test_missing_asset_and_time_columns_say_how_to_do_without(tmp_path):
    path = tmp_path / "t.csv"
    recording(5, 0).to_csv(path, index=False)
    with pytest.raises(DataError, match="asset_column=null"):
        TableSource(str(path), asset_column="pump", time_column="t").load()
    with pytest.raises(DataError, match="time_column=null"):
        TableSource(str(path), time_column="when", label_column=None).load()


# -- label-like columns -------------------------------------------------------------------------
def labelled(n: int = 400, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    failure = (rng.random(n) < 0.03).astype(int)
    mode = failure * (rng.random(n) < 0.8)  # a failure-mode flag: set on most failures
    return pd.DataFrame(
        {
            "t": np.arange(n, dtype=float),
            "temp": rng.normal(300, 2, n),
            "torque": rng.normal(40, 5, n),
            "twin": mode,
            "failure": failure,
        }
    )


def test_a_failure_mode_flag_is_refused_with_the_fix(tmp_path):
    path = tmp_path / "m.csv"
    labelled().to_csv(path, index=False)
    with pytest.raises(DataError, match=r"'twin'.*exclude_columns=\[twin\]"):
        TableSource(str(path), time_column="t", label_column="failure").load()
    table = TableSource(
        str(path), time_column="t", label_column="failure", exclude_columns=["twin"]
    ).load()
    assert table.sensor_columns == ["temp", "torque"]
    explicit = TableSource(
        str(path), time_column="t", label_column="failure", feature_columns=["temp", "twin"]
    ).load()
    assert explicit.sensor_columns == ["temp", "twin"]  # the user's explicit choice stands


def test_a_label_like_name_is_a_warning(tmp_path):
    path = tmp_path / "m.csv"
    frame = labelled().drop(columns="twin")
    frame["fault_code"] = np.random.default_rng(3).integers(0, 9, len(frame))
    frame.to_csv(path, index=False)
    table = TableSource(str(path), time_column="t", label_column="failure").load()
    assert "fault_code" in table.sensor_columns
    assert any("'fault_code' looks like a label" in n for n in table.notes)


def test_label_like_detection_per_label_kind():
    rng = np.random.default_rng(0)
    anomaly = np.r_[np.zeros(50), np.ones(20), np.zeros(30)]
    frame = pd.DataFrame(
        {
            "anomaly": anomaly,
            "score": anomaly * 5 + rng.random(100),  # a measurement that shows the anomaly
            "state": anomaly * 3,  # an event code that is the anomaly
            "noise": rng.random(100),
            "rul": np.arange(100.0)[::-1],
            "cycles_left": np.arange(100.0)[::-1] * 2 + 1,
        }
    )
    found = find_label_like(frame, ["score", "state", "noise"], "anomaly", "anomaly")
    assert [(f.column, f.strong) for f in found] == [("state", True), ("score", False)]
    found = find_label_like(frame, ["cycles_left", "noise"], "rul", "rul")
    assert [(f.column, f.strong) for f in found] == [("cycles_left", True)]


# -- gaps and the head split --------------------------------------------------------------------
def test_long_gaps_split_segments_by_default():
    from plantml.data.table import SensorTable

    t = np.r_[np.arange(30.0), 130 + np.arange(30.0)]  # one 100-step outage
    frame = pd.DataFrame({"asset": "a", "t": t, "x": np.sin(t)})
    table = SensorTable(frame=frame, asset_column="asset", time_column="t", sensor_columns=["x"])
    cleaned, report = clean(table)
    assert report.steps["fill"]["gaps_split"] == 1
    assert cleaned.frame["segment"].tolist() == [0] * 30 + [1] * 30
    kept, report = clean(table, {"fill": {"gap_factor": None}})
    assert report.steps["fill"]["gaps_split"] == 0 and kept.frame["segment"].max() == 0


def test_head_split_by_fraction_and_by_time():
    from plantml.data.table import SensorTable

    frame = pd.DataFrame({"asset": np.repeat(["a", "b"], [10, 20]), "t": np.r_[0:10, 0:20]})
    frame["x"] = 1.0
    table = SensorTable(frame=frame, asset_column="asset", time_column="t", sensor_columns=["x"])
    codes = split_rows(table, method="head", head_fraction=0.5, val_fraction=0.0)
    assert (codes[:10] == SPLIT_CODES["train"]).sum() == 5
    assert (codes[10:] == SPLIT_CODES["train"]).sum() == 10
    codes = split_rows(table, method="head", head_until=3, val_fraction=0.0)
    assert (codes == SPLIT_CODES["train"]).sum() == 8  # t = 0..3 in both assets
    with pytest.raises(ConfigError, match="exactly one of"):
        split_rows(table, method="head", head_rows=3, head_fraction=0.5)
    with pytest.raises(ConfigError, match="exactly one of"):
        split_rows(table, method="head")
