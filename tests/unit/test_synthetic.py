"""The simulated pump fleet: determinism, physics, events and data faults."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pytest

from plantml.data.sources.synthetic import SENSORS, SENTINELS, SyntheticFleet
from plantml.data.table import SensorTable
from plantml.errors import ConfigError

SMALL = {"n_assets": 6, "days": 45.0, "seed": 3}
INTERVAL_MIN = {"vibration_rms": 15, "motor_current": 15, "pressure": 30, "bearing_temp": 60}


@pytest.fixture(scope="module")
def faulty() -> pd.DataFrame:
    return SyntheticFleet(**SMALL).load().frame


@pytest.fixture(scope="module")
def clean() -> pd.DataFrame:
    return SyntheticFleet(**SMALL, faults=False, include_health=True).load().frame


def failure_window_fraction(frame: pd.DataFrame, horizon_h: float = 24.0) -> float:
    """Share of hourly grid points whose time to the next failure is at most ``horizon_h``."""
    inside = total = 0
    for _, g in frame.groupby("asset"):
        grid = pd.date_range(
            g["timestamp"].min().floor("h"), g["timestamp"].max().floor("h"), freq="h"
        ).to_numpy()
        fails = np.sort(g.loc[g["failure"] == 1, "timestamp"].to_numpy())
        total += len(grid)
        if len(fails):
            nxt = np.searchsorted(fails, grid)
            ahead = nxt < len(fails)
            wait = (fails[np.minimum(nxt, len(fails) - 1)] - grid) / np.timedelta64(1, "h")
            inside += int((ahead & (wait <= horizon_h)).sum())
    return inside / total


def longest_repeat(frame: pd.DataFrame, sensor: str) -> int:
    """Longest run of identical consecutive readings of ``sensor`` within any asset."""
    best = 0
    for _, values in frame.groupby("asset")[sensor]:
        v = values.dropna().to_numpy()
        if len(v):
            run_id = np.cumsum(np.r_[True, v[1:] != v[:-1]])
            best = max(best, int(np.bincount(run_id).max()))
    return best


def test_same_arguments_give_the_same_frame(faulty):
    pd.testing.assert_frame_equal(faulty, SyntheticFleet(**SMALL).load().frame)


def test_adding_assets_leaves_the_first_ones_unchanged():
    few = SyntheticFleet(n_assets=2, days=10).load().frame
    more = SyntheticFleet(n_assets=4, days=10).load().frame
    pd.testing.assert_frame_equal(few, more[more["asset"].isin(few["asset"].unique())])


def test_another_seed_gives_other_data(faulty):
    other = SyntheticFleet(**{**SMALL, "seed": 4}).load().frame
    assert not faulty["vibration_rms"].head(500).equals(other["vibration_rms"].head(500))


def test_table_roles_and_dtypes(faulty, clean):
    table = SyntheticFleet(**SMALL).load("val")
    assert isinstance(table, SensorTable)
    table.validate()
    assert table.sensor_columns == list(SENSORS)
    assert table.setting_columns == ["load", "speed_rpm"]
    assert faulty["timestamp"].dtype == np.dtype("datetime64[ns]")
    assert faulty["failure"].dtype == np.int8 and faulty["maintenance"].dtype == np.int8
    assert set(faulty["asset"]) == {f"pump_{i:03d}" for i in range(6)}
    assert "health" not in faulty.columns
    assert clean["health"].between(0, 1).all()
    assert (clean.loc[clean["failure"] == 1, "health"] == 0).all()
    assert faulty["timestamp"].min() >= pd.Timestamp("2024-01-01") - pd.Timedelta(minutes=1)


def test_unknown_split_and_bad_config_are_config_errors():
    with pytest.raises(ConfigError, match="'train', 'val', 'test'"):
        SyntheticFleet(n_assets=1, days=1).load("holdout")
    with pytest.raises(ConfigError, match="mean_hours"):
        SyntheticFleet(regimes={"only": {"load": 0.5, "speed_rpm": 1500, "share": 1.0}})
    with pytest.raises(ConfigError, match="repair_hours"):
        SyntheticFleet(repair_hours=[48, 6])


@pytest.mark.parametrize("sensor", SENSORS)
def test_each_sensor_is_read_at_its_rate(faulty, clean, sensor):
    for frame, tolerance_s in ((clean, 0), (faulty, 120)):
        gaps = (
            frame.dropna(subset=[sensor])
            .groupby("asset")["timestamp"]
            .diff()
            .dropna()
            .dt.total_seconds()
        )
        assert abs(gaps.median() - 60 * INTERVAL_MIN[sensor]) <= tolerance_s


def test_failures_are_followed_by_a_repair_gap_then_maintenance(faulty):
    assert faulty["failure"].sum() > 0
    repaired = 0
    for _, g in faulty.groupby("asset"):
        times, maint = g["timestamp"].to_numpy(), g["maintenance"].to_numpy()
        for i in np.flatnonzero(g["failure"].to_numpy()):
            if i + 1 < len(g):  # a failure near the end may still be under repair
                assert times[i + 1] - times[i] >= np.timedelta64(6 * 3600 - 60, "s")
                assert maint[i + 1] == 1
                repaired += 1
    assert repaired > 0


def test_failure_windows_are_a_few_percent_with_defaults():
    start = time.perf_counter()
    frame = SyntheticFleet().load().frame
    assert time.perf_counter() - start < 5.0
    assert 0.003 <= failure_window_fraction(frame) <= 0.05
    per_asset = frame.groupby("asset")["failure"].sum()
    assert per_asset.between(1, 3).mean() >= 0.5


def test_regimes_all_present_with_unequal_shares(clean):
    share = clean["regime"].value_counts(normalize=True)
    assert set(share.index) == {"low", "nominal", "high"}
    assert share["nominal"] > share["low"] > share["high"] > 0.03
    assert share["high"] < 0.3


def test_faults_are_present_when_enabled(faulty):
    assert faulty.duplicated(["asset", "timestamp"]).any()
    assert faulty.duplicated().sum() == faulty.duplicated(["asset", "timestamp"]).sum()
    sentinels = sum(int((faulty[s] == v).sum()) for s, v in SENTINELS.items())
    assert sentinels > 0
    assert max(longest_repeat(faulty, s) for s in SENSORS) >= 8
    fast = faulty.dropna(subset=["vibration_rms"])
    assert (fast["timestamp"].dt.second != 0).mean() > 0.5  # jittered clocks
    assert faulty["vibration_rms"].isna().sum() > len(fast) * 0.005  # dropouts


def test_clean_data_has_no_faults(clean):
    assert not clean.duplicated(["asset", "timestamp"]).any()
    ts = clean["timestamp"]
    assert (ts.dt.second == 0).all() and (ts.dt.minute % 15 == 0).all()
    assert clean[["vibration_rms", "motor_current", "load", "speed_rpm"]].notna().all().all()
    assert clean["regime"].notna().all()
    running = clean["failure"] == 0  # the trip row is logged by the 15-min logger alone
    assert clean.loc[running & (ts.dt.minute % 30 == 0), "pressure"].notna().all()
    assert clean.loc[running & (ts.dt.minute == 0), "bearing_temp"].notna().all()
    assert clean.loc[ts.dt.minute % 30 != 0, "pressure"].isna().all()
    for sensor, value in SENTINELS.items():
        assert not (clean[sensor] == value).any()
    assert (clean[list(SENSORS)].min() > 0).all()
    assert clean["bearing_temp"].max() < 150 and clean["vibration_rms"].max() < 30
    assert max(longest_repeat(clean, s) for s in SENSORS) < 8


def test_vibration_rises_before_failure(clean):
    before, fresh = [], []
    for _, g in clean.groupby("asset"):
        t, vib = g["timestamp"].to_numpy(), g["vibration_rms"].to_numpy()
        day = np.timedelta64(24, "h")
        for ft in t[g["failure"].to_numpy() == 1]:
            before.append(vib[(t > ft - day) & (t <= ft)].mean())
        for mt in t[g["maintenance"].to_numpy() == 1]:
            if g.loc[g["timestamp"] == mt, "health"].iloc[0] > 0.95:  # a new life
                fresh.append(vib[(t >= mt) & (t < mt + day)].mean())
    assert before and fresh
    assert np.mean(before) > 1.5 * np.mean(fresh)


def test_config_from_yaml_like_values():
    # what Hydra passes: lists instead of tuples, plain floats, a regime mapping
    regimes = {
        "idle": {"load": 0.3, "speed_rpm": 1000, "share": 0.5, "mean_hours": 12},
        "run": {"load": 0.8, "speed_rpm": 1500, "share": 0.5, "mean_hours": 12},
    }
    frame = SyntheticFleet(n_assets=2, days=5, regimes=regimes, repair_hours=[6, 12]).load().frame
    assert set(frame["regime"]) == {"idle", "run"}
    with pytest.raises(ConfigError, match="failure_scale"):
        SyntheticFleet(failure_scale=-1)
