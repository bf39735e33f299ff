"""Sanity bounds, and reading imperfect files: separators, time zones, text in numbers."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from plantml.data.cleaning import clean
from plantml.data.sanity import fit_bounds
from plantml.data.sources.parsing import sniff_separator
from plantml.data.sources.table import TableSource, parse_time
from plantml.errors import ConfigError, DataError
from tests.conftest import make_fleet
from tests.unit.test_bad_inputs import pipeline, write_csv


def test_bounds_are_quartiles_plus_a_multiple_of_the_spread():
    frame = pd.DataFrame(
        {
            "normal": np.arange(101, dtype=float),  # q25 25, q75 75
            "two_valued": np.r_[np.zeros(99), 1.0, 1.0],  # IQR 0: q99.9 - q0.1 = 1
            "constant": np.full(101, 7.0),  # no spread at all: |median|
        }
    )
    rows = np.ones(101, dtype=bool)
    bounds = fit_bounds(frame, ["normal", "two_valued", "constant"], rows, multiple=2)
    assert bounds["normal"] == [25 - 2 * 50, 75 + 2 * 50]
    assert bounds["two_valued"] == [0 - 2 * 1, 0 + 2 * 1]
    assert bounds["constant"] == [7 - 2 * 7, 7 + 2 * 7]
    only_first = fit_bounds(frame, ["normal"], np.arange(101) < 51, multiple=2)
    assert only_first["normal"] == [12.5 - 2 * 25, 37.5 + 2 * 25]  # the rows asked for only
    with pytest.raises(ConfigError, match=r"sanity\.multiple must be a number > 0"):
        fit_bounds(frame, ["normal"], rows, multiple=0)


def test_one_huge_value_no_longer_destroys_the_scaling(tmp_path):
    frame = make_fleet(n_assets=8).frame
    clean_scale = pipeline(write_csv(tmp_path, frame)).prepare().scaler.state()["scale"][-1]
    frame.loc[10, "s1"] = 1e30
    path = write_csv(tmp_path, frame)
    data = pipeline(path).prepare()
    assert data.cleaning["sanity"]["by_column"] == {"s1": 1}
    np.testing.assert_allclose(data.scaler.state()["scale"][-1], clean_scale, rtol=1e-3)
    unchecked = pipeline(path, cleaning={"sanity": {"enabled": False}}).prepare()
    assert unchecked.scaler.state()["scale"][-1][1] > 1e20  # what the step prevents


def test_bounds_come_from_the_training_rows_and_can_be_reused():
    table = make_fleet(n_assets=4)
    train = (table.frame["unit"] <= 2).to_numpy()
    table.frame.loc[np.flatnonzero(~train)[:3], "s0"] = 500.0  # far out, but not in training
    cfg = {"sanity": {"multiple": 5}}
    _, report = clean(table, cfg, fit_rows=lambda t: (t.frame["unit"] <= 2).to_numpy())
    fitted = report.steps["sanity"]["bounds"]
    assert fitted == fit_bounds(table.frame, ["s0", "s1", "s2"], train, 5)
    assert report.steps["sanity"]["by_column"] == {"s0": 3}
    again, reused = clean(table, cfg, bounds=fitted)  # an official test set: training's bounds
    assert reused.steps["sanity"]["bounds"] == fitted
    assert again.frame["s0"].max() < 500


def test_separator_is_sniffed(tmp_path):
    frame = make_fleet(n_assets=2).frame
    for sep in (",", ";", "\t", "|"):
        frame.to_csv(tmp_path / "f.csv", sep=sep, index=False)
        assert sniff_separator(tmp_path / "f.csv") == sep
        table = TableSource(
            str(tmp_path / "f.csv"), asset_column="unit", time_column="cycle"
        ).load()
        assert table.sensor_columns[:3] == ["s0", "s1", "s2"]


def parse_timestamps(values: pd.Series, column: str, name: str, utc: bool) -> pd.Series:
    return parse_time(values.rename(column), None, name, utc)


def test_time_zones():
    stamps = pd.Series(
        ["2024-03-31 01:30+01:00", "2024-03-31 03:30+02:00", "2024-03-31 04:30+02:00"]
    )
    with pytest.raises(
        DataError, match=r"mixes time zones: \+02:00 \(2 rows\), \+01:00 \(1 rows\)"
    ):
        parse_timestamps(stamps, "ts", "plant.csv", utc=False)
    utc = parse_timestamps(stamps, "ts", "plant.csv", utc=True)
    assert utc.astype(str).tolist() == [
        "2024-03-31 00:30:00",
        "2024-03-31 01:30:00",  # the daylight-saving jump is one hour of real time
        "2024-03-31 02:30:00",
    ]
    one_zone = parse_timestamps(stamps[1:], "ts", "plant.csv", utc=False)  # one offset: to UTC
    assert one_zone.astype(str).tolist() == ["2024-03-31 01:30:00", "2024-03-31 02:30:00"]
    naive_and_aware = pd.Series(["2024-01-01 00:00", "2024-01-01 01:00+01:00"])
    with pytest.raises(DataError, match=r"no offset \(1 rows\)"):
        parse_timestamps(naive_and_aware, "ts", "plant.csv", utc=False)
    assert parse_timestamps(naive_and_aware, "ts", "plant.csv", utc=True).nunique() == 1
