"""Bad input gets a clear message that names the problem and the fix."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from plantml.data.pipeline import DataPipeline
from plantml.data.sources.table import TableSource
from plantml.errors import ConfigError, DataError
from tests.conftest import make_fleet


def write_csv(tmp_path, frame, name="plant.csv"):
    path = tmp_path / name
    frame.to_csv(path, index=False)
    return path


def pipeline(path, **kw):
    source = TableSource(
        str(path), asset_column="unit", time_column="cycle", label_column="failure"
    )
    defaults = {
        "split_by": {"val_fraction": 0.2, "test_fraction": 0.2},
        "window": {"length": 10},
        "target": {"kind": "rul"},
    }
    return DataPipeline(source, **{**defaults, **kw})


@pytest.fixture
def fleet_csv(tmp_path):
    return write_csv(tmp_path, make_fleet(n_assets=8).frame)


def test_table_source_trains_end_to_end(fleet_csv):
    data = pipeline(fleet_csv).prepare()
    assert data.feature_names == ["s0", "s1", "s2"]  # every other numeric column
    assert len(data.windows["train"]) > 0 and data.windows["train"].targets.min() >= 0


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match=r"data file not found at .*holds: nothing.*data.path"):
        pipeline(tmp_path / "missing.csv").prepare()


def test_glob_of_files(tmp_path):
    frame = make_fleet(n_assets=8).frame
    write_csv(tmp_path, frame[frame.unit <= 4], "a.csv")
    frame[frame.unit > 4].to_parquet(tmp_path / "b.parquet")
    data = pipeline(tmp_path / "*.csv").prepare()
    assert len(data.asset_names) == 4
    with pytest.raises(DataError, match="not found"):
        pipeline(tmp_path / "*.txt").prepare()


def test_wrong_column_name(tmp_path, fleet_csv):
    source = TableSource(str(fleet_csv), asset_column="unti", time_column="cycle")
    with pytest.raises(
        DataError, match=r"column 'unti' \(data.asset_column\) not found .*did you mean 'unit'"
    ):
        source.load()


def test_empty_table(tmp_path):
    path = write_csv(tmp_path, make_fleet().frame.iloc[:0])
    with pytest.raises(DataError, match="empty"):
        pipeline(path).prepare()
    (tmp_path / "blank.csv").write_text("")
    with pytest.raises(DataError, match="empty"):
        pipeline(tmp_path / "blank.csv").prepare()


def test_non_numeric_feature(tmp_path):
    frame = make_fleet().frame.assign(s1=lambda f: f.s1.astype(str) + "bar")
    source = TableSource(
        str(write_csv(tmp_path, frame)),
        asset_column="unit",
        time_column="cycle",
        feature_columns=["s0", "s1"],
    )
    with pytest.raises(DataError, match=r"column 's1' .* is not numeric .*data.feature_columns"):
        source.load()


def test_nan_and_inf_without_filling(tmp_path):
    frame = make_fleet(n_assets=8).frame
    frame.loc[5, "s0"] = np.inf
    frame.loc[50, "s2"] = np.nan
    off = {"fill": {"enabled": False}, "non_finite": {"enabled": False}}
    with pytest.raises(DataError, match=r"NaN/inf values remain .*data.cleaning.fill"):
        pipeline(write_csv(tmp_path, frame), cleaning=off).prepare()
    # with cleaning on they are counted, filled and reported
    data = pipeline(write_csv(tmp_path, frame)).prepare()
    assert "s0" in str(data.cleaning["non_finite"])  # the inf was counted against its column
    assert np.isfinite(data.features).all()


def test_non_monotonic_time(tmp_path):
    frame = make_fleet(n_assets=8).frame
    frame.loc[[3, 4], "cycle"] = frame.loc[[4, 3], "cycle"].to_numpy()
    with pytest.raises(
        DataError,
        match=r"time is not increasing within asset 1 \('unit'\): row 4 .*data.cleaning.sort",
    ):
        pipeline(write_csv(tmp_path, frame), cleaning={"sort": {"enabled": False}}).prepare()
    data = pipeline(write_csv(tmp_path, frame)).prepare()  # sorting on: fixed and reported
    assert data.cleaning["sort"] == {"out_of_order": 2}
    for _, cycles in data.frame.groupby("unit")["cycle"]:
        assert cycles.is_monotonic_increasing


def test_window_longer_than_any_history(fleet_csv):
    with pytest.raises(
        DataError, match=r"data.window.length=500 is longer than every asset's history .*<= \d+"
    ):
        pipeline(fleet_csv, window={"length": 500}).prepare()


def test_unknown_pipeline_keys(fleet_csv):
    with pytest.raises(ConfigError, match=r"unknown key\(s\) \['lenght'\] in data.window"):
        pipeline(fleet_csv, window={"lenght": 10})
    with pytest.raises(ConfigError, match=r"unknown data\.label_kind"):
        TableSource(str(fleet_csv), label_kind="broken")


def test_duplicated_rows_are_merged_and_counted(tmp_path):
    frame = make_fleet(n_assets=8).frame
    frame = pd.concat([frame, frame.iloc[:7]], ignore_index=True)
    data = pipeline(write_csv(tmp_path, frame)).prepare()
    assert data.cleaning["dedupe"]["rows_removed"] == 7
