"""Cleaning steps on tiny hand-built tables with hand-computed results."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pytest

from plantml.data.cleaning import DEFAULT_CONFIG, clean
from plantml.data.table import SensorTable
from plantml.errors import ConfigError, DataError

nan = np.nan


def table(frame: dict | pd.DataFrame, sensors=("s1",), **roles) -> SensorTable:
    frame = pd.DataFrame(frame)
    return SensorTable(frame, "asset", "time", list(sensors), **roles)


def only(**steps) -> dict:
    """Every step disabled but sort and the ones given (with their options)."""
    cfg = {name: {"enabled": name == "sort"} for name in DEFAULT_CONFIG}
    for name, opts in steps.items():
        cfg[name] = {"enabled": True, **opts}
    return cfg


def ts(*hhmm: str) -> pd.Series:
    return pd.to_datetime([f"2024-01-01 {t}" for t in hhmm])


# --- sort ----------------------------------------------------------------------------------------


def test_sort_orders_by_asset_and_time_and_counts_moved_rows():
    t = table({"asset": ["a", "a", "a", "b"], "time": [1, 3, 2, 1], "s1": [1.0, 3.0, 2.0, 9.0]})
    out, report = clean(t, only())
    assert out.frame["time"].tolist() == [1, 2, 3, 1]
    assert out.frame["s1"].tolist() == [1.0, 2.0, 3.0, 9.0]
    assert report.steps["sort"] == {"out_of_order": 2}


def test_unsorted_time_with_sort_disabled_is_a_readable_error():
    t = table({"asset": ["a", "a", "a"], "time": [1, 5, 4], "s1": [1.0, 2.0, 3.0]})
    with pytest.raises(DataError) as err:
        clean(t, {**only(), "sort": {"enabled": False}})
    msg = str(err.value)
    assert "asset a ('asset')" in msg and "time=4" in msg and "after 5" in msg
    assert "data.cleaning.sort" in msg


def test_interleaved_assets_with_sort_disabled_is_an_error():
    t = table({"asset": ["a", "b", "a"], "time": [1, 1, 2], "s1": [1.0, 2.0, 3.0]})
    with pytest.raises(DataError, match=r"asset a \('asset'\) are not contiguous"):
        clean(t, {**only(), "sort": {"enabled": False}})


def test_sorted_input_passes_with_sort_disabled():
    t = table({"asset": ["a", "a", "b"], "time": [1, 2, 1], "s1": [1.0, 2.0, 3.0]})
    out, _ = clean(t, {**only(), "sort": {"enabled": False}})
    assert out.frame["s1"].tolist() == [1.0, 2.0, 3.0]


# --- non_finite, dedupe, clip --------------------------------------------------------------------


def test_non_finite_becomes_nan_and_is_counted_per_column():
    t = table(
        {"asset": "a", "time": [1, 2, 3, 4], "s1": [1.0, np.inf, -np.inf, 2.0], "s2": 1.0},
        sensors=("s1", "s2"),
    )
    out, report = clean(t, only(non_finite={}))
    assert out.frame["s1"].isna().tolist() == [False, True, True, False]
    assert report.steps["non_finite"] == {"replaced": 2, "by_column": {"s1": 2}}


def test_dedupe_merges_first_non_null_and_max_label():
    t = table(
        {
            "asset": ["a", "a", "a"],
            "time": [1, 1, 2],
            "s1": [nan, 3.0, 4.0],
            "s2": [5.0, 6.0, 7.0],
            "failure": [0, 1, 0],
        },
        sensors=("s1", "s2"),
        failure_column="failure",
    )
    out, report = clean(t, only(dedupe={}))
    f = out.frame
    assert f["time"].tolist() == [1, 2]
    assert f["s1"].tolist() == [3.0, 4.0]
    assert f["s2"].tolist() == [5.0, 7.0]
    assert f["failure"].tolist() == [1, 0]
    assert report.steps["dedupe"] == {"duplicate_rows": 2, "merged_into": 1, "rows_removed": 1}
    assert "merged 2 duplicate (asset, time) rows into 1" in report.lines()[2]


def test_clip_nan_versus_clamp():
    frame = {"asset": "a", "time": [1, 2, 3, 4], "s1": [-5.0, 10.0, 150.0, 50.0], "s2": 1.0}
    t = table(frame, sensors=("s1", "s2"))
    bounds = {"s1": [0, 100], "s2": [None, 0.5]}
    as_nan, report = clean(t, only(clip={"bounds": bounds}))
    np.testing.assert_array_equal(as_nan.frame["s1"], [nan, 10.0, nan, 50.0])
    assert as_nan.frame["s2"].isna().all()
    assert report.steps["clip"] == {"changed": 6, "by_column": {"s1": 2, "s2": 4}}
    clamped, _ = clean(t, only(clip={"bounds": bounds, "action": "clip"}))
    assert clamped.frame["s1"].tolist() == [0.0, 10.0, 100.0, 50.0]
    assert clamped.frame["s2"].tolist() == [0.5] * 4


def test_clip_unknown_column_names_the_valid_ones():
    t = table({"asset": "a", "time": [1, 2], "s1": [1.0, 2.0]})
    with pytest.raises(DataError, match="valid columns: s1"):
        clean(t, only(clip={"bounds": {"s9": [0, 1]}}))


# --- despike -------------------------------------------------------------------------------------


def test_despike_catches_a_spike_and_leaves_smooth_data_alone():
    x = np.sin(np.linspace(0, 6 * np.pi, 120))
    frame = {"asset": "a", "time": np.arange(120), "s1": x, "s2": x.copy()}
    frame["s2"][60] += 5.0
    t = table(frame, sensors=("s1", "s2"))
    out, report = clean(t, only(despike={}))
    assert out.frame["s1"].notna().all()
    assert np.flatnonzero(out.frame["s2"].isna()).tolist() == [60]
    assert report.steps["despike"] == {"spikes": 1, "by_column": {"s2": 1}}


def test_despike_windows_stop_at_asset_boundaries():
    # a level shift between assets is not a spike
    frame = {"asset": ["a"] * 10 + ["b"] * 10, "time": list(range(10)) * 2}
    frame["s1"] = [1.0, 1.1, 0.9, 1.0, 1.05] * 2 + [100.0, 100.1, 99.9, 100.0, 100.05] * 2
    _, report = clean(table(frame), only(despike={"window": 5}))
    assert report.steps["despike"]["spikes"] == 0


# --- align ---------------------------------------------------------------------------------------


def multirate_table() -> SensorTable:
    """A 15-min sensor, an hourly sensor read 7 minutes late, a setting and two events."""
    fast_times = [f"{h:02d}:{m:02d}" for h in range(3) for m in (0, 15, 30, 45)][:9]  # to 02:00
    rows = [(t, float(i), nan) for i, t in enumerate(fast_times)]
    rows += [("00:07", nan, 10.0), ("01:07", nan, 11.0)]
    frame = pd.DataFrame(rows, columns=["clock", "fast", "slow"])
    frame.insert(0, "time", ts(*frame["clock"]))
    frame = frame.drop(columns="clock").sort_values("time").reset_index(drop=True)
    frame.insert(0, "asset", "pump1")
    frame["load"] = np.where(frame["fast"].notna(), 1.0, nan)
    frame["failure"] = (frame["time"] == ts("01:45")[0]).astype(int)
    frame["maintenance"] = (frame["time"] == ts("00:15")[0]).astype(int)
    return table(
        frame,
        sensors=("fast", "slow"),
        setting_columns=["load"],
        failure_column="failure",
        maintenance_column="maintenance",
    )


def test_align_averages_fast_sensor_and_joins_slow_one_backward():
    t = multirate_table()
    out, report = clean(t, only(align={"period": "1h"}))
    f = out.frame
    assert f["time"].tolist() == list(ts("00:00", "01:00", "02:00"))
    assert f["time"].dtype == t.frame["time"].dtype
    # bins (t - 1h, t]: {0}, {1, 2, 3, 4}, {5, 6, 7, 8}
    np.testing.assert_allclose(f["fast"], [0.0, 2.5, 6.5])
    # latest reading at or before the grid time, within 1h: none, 00:07, 01:07
    np.testing.assert_array_equal(f["slow"], [nan, 10.0, 11.0])
    assert f["failure"].tolist() == [0, 0, 1]  # the 01:45 failure is kept in the 02:00 bin
    assert f["maintenance"].tolist() == [0, 1, 0]
    assert f["load"].tolist() == [1.0, 1.0, 1.0]
    counts = report.steps["align"]
    assert counts["grid_rows"] == 3 and counts["input_rows"] == 11
    assert counts["readings_aggregated"] == 9
    assert counts["missing_by_column"] == {"fast": 0, "slow": 1}


def test_align_nearest_within_tolerance_handles_clock_skew():
    t = multirate_table()
    cfg = only(align={"period": "1h", "tolerance": "10min", "direction": "nearest"})
    out, report = clean(t, cfg)
    # 00:07 -> 00:00 and 01:07 -> 01:00 are within 10 min; 02:00 has nothing within 10 min
    np.testing.assert_array_equal(out.frame["slow"], [10.0, 11.0, nan])
    assert report.steps["align"]["missing_by_column"]["slow"] == 1
    assert "slow: 1" in report.messages["align"]


def test_align_numeric_cycles():
    t = table({"asset": "a", "time": [0, 1, 2, 3, 4, 5], "s1": [0.0, 10, 20, 30, 40, 50]})
    out, report = clean(t, only(align={"period": 2}))
    assert out.frame["time"].tolist() == [0, 2, 4, 6]
    assert out.frame["time"].dtype == np.int64
    np.testing.assert_allclose(out.frame["s1"], [0.0, 15.0, 35.0, 50.0])
    assert report.steps["align"]["grid_rows"] == 4


def test_align_period_type_must_match_time():
    with pytest.raises(ConfigError, match="timestamps"):
        clean(multirate_table(), only(align={"period": 1}))


# --- fill ----------------------------------------------------------------------------------------


def gappy_table(**roles) -> SensorTable:
    frame = {
        "asset": ["a"] * 9 + ["b"] * 2,
        "time": [*range(9), 0, 1],
        "s1": [1.0, nan, nan, 4.0, nan, nan, nan, 8.0, 9.0, 5.0, 6.0],
        "s2": np.arange(11.0),
        "failure": [0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0],
    }
    return table(frame, sensors=("s1", "s2"), failure_column="failure", **roles)


def test_bounded_ffill_fills_short_gap_drops_long_one_and_splits_segments():
    out, report = clean(gappy_table(), only(fill={"max_gap": 2}))
    f = out.frame
    assert f["s1"].tolist() == [1.0, 1.0, 1.0, 4.0, 8.0, 9.0, 5.0, 6.0]
    assert f["time"].tolist() == [0, 1, 2, 3, 7, 8, 0, 1]
    assert out.segment_column == "segment"
    assert f["segment"].dtype == np.int32
    assert f["segment"].tolist() == [0, 0, 0, 0, 1, 1, 0, 0]
    # the failure on dropped row 5 moves back to the last kept row before it (time 3),
    # the last observation of the failing life
    assert f["failure"].tolist() == [0, 0, 0, 1, 0, 0, 0, 0]
    counts = report.steps["fill"]
    assert counts["filled"] == 2 and counts["filled_by_column"] == {"s1": 2}
    assert counts["rows_dropped"] == 3 and counts["segments"] == 3
    assert counts["events_moved"] == 1
    line = report.messages["fill"]
    assert "filled 2 values" in line and "dropped 3 rows" in line and "3 segments" in line


def test_event_on_dropped_tail_moves_to_previous_kept_row():
    frame = {"asset": "a", "time": [0, 1, 2], "s1": [1.0, 2.0, nan], "failure": [0, 0, 1]}
    out, report = clean(table(frame, failure_column="failure"), only(fill={"method": "none"}))
    assert out.frame["failure"].tolist() == [0, 1]
    assert report.steps["fill"]["events_moved"] == 1


def test_fill_mask_marks_originally_missing_values():
    cfg = only(fill={"max_gap": 2, "mask": True, "mask_as_feature": True})
    out, _ = clean(gappy_table(), cfg)
    mask = out.frame["s1__missing"]
    assert mask.dtype == np.float32
    assert mask.tolist() == [0, 1, 1, 0, 0, 0, 0, 0]
    assert "s2__missing" not in out.frame  # s2 had no missing value
    assert out.sensor_columns == ["s1", "s2", "s1__missing"]
    plain, _ = clean(gappy_table(), only(fill={"max_gap": 2, "mask": True}))
    assert plain.sensor_columns == ["s1", "s2"] and "s1__missing" in plain.frame


def test_interpolate_is_linear_in_time():
    frame = {"asset": "a", "time": [0, 1, 3, 4, 5], "s1": [0.0, nan, nan, 8.0, nan]}
    out, report = clean(table(frame), only(fill={"method": "interpolate"}))
    # interior gap linear in time; the trailing gap (no value after it) is carried forward
    assert out.frame["s1"].tolist() == [0.0, 2.0, 6.0, 8.0, 8.0]
    assert report.steps["fill"]["filled"] == 3


def test_fill_carries_settings_and_condition_forward():
    frame = {
        "asset": "a",
        "time": [0, 1, 2, 3],
        "s1": [1.0, 2.0, 3.0, 4.0],
        "load": [0.5, nan, 0.7, nan],
        "regime": ["lo", None, "hi", "hi"],
    }
    t = table(frame, setting_columns=["load"], condition_column="regime")
    out, report = clean(t, only(fill={"method": "interpolate"}))
    assert out.frame["load"].tolist() == [0.5, 0.6, 0.7, 0.7]
    assert out.frame["regime"].tolist() == ["lo", "lo", "hi", "hi"]
    assert report.steps["fill"]["filled_by_column"] == {"load": 2, "regime": 1}


def test_fill_after_align_splits_at_offline_gap():
    times = ts("00:00", "01:00", "02:00", "09:00", "10:00")
    frame = {"asset": "a", "time": times, "s1": [1.0, 2.0, 3.0, 4.0, 5.0]}
    out, report = clean(table(frame), only(align={"period": "1h"}, fill={"max_gap": 3}))
    # 03:00 takes 02:00's reading (within the 1h tolerance); 04:00 .. 08:00 are a 5-row gap
    assert out.frame["time"].dt.hour.tolist() == [0, 1, 2, 3, 9, 10]
    assert out.frame["segment"].tolist() == [0, 0, 0, 0, 1, 1]
    assert report.steps["fill"]["rows_dropped"] == 5


# --- drop_constant -------------------------------------------------------------------------------


def test_drop_constant_drops_near_constant_sensor():
    n = 1000
    rng = np.random.default_rng(0)
    const = np.ones(n)
    const[7] = 2.0  # 999 of 1000 values are 1.0: 0.999 >= 0.995
    frame = {"asset": "a", "time": np.arange(n), "flat": const, "live": rng.normal(size=n)}
    out, report = clean(table(frame, sensors=("flat", "live")), only(drop_constant={}))
    assert out.sensor_columns == ["live"] and "flat" not in out.frame
    assert report.steps["drop_constant"] == {"dropped": 1, "columns": ["flat"]}
    assert "flat" in report.lines()[-1]


def test_drop_constant_refuses_to_drop_every_sensor():
    frame = {"asset": "a", "time": [0, 1, 2], "s1": 1.0}
    with pytest.raises(DataError, match="dominant_fraction"):
        clean(table(frame), only(drop_constant={}))


# --- config, report, purity ----------------------------------------------------------------------


def test_unknown_config_keys_are_config_errors():
    t = gappy_table()
    with pytest.raises(ConfigError, match="valid keys: enabled, method, max_gap"):
        clean(t, {"fill": {"maxgap": 2}})
    with pytest.raises(ConfigError, match="valid steps"):
        clean(t, {"despik": {"enabled": True}})
    with pytest.raises(ConfigError, match="ffill"):
        clean(t, {"fill": {"method": "spline"}})


def test_omegaconf_config_is_accepted():
    from omegaconf import OmegaConf

    cfg = OmegaConf.create(only(fill={"max_gap": 2}))
    out, _ = clean(gappy_table(), cfg)
    assert len(out.frame) == 8


def test_defaults_run_end_to_end_without_touching_the_input(caplog):
    frame = pd.DataFrame(
        {
            "asset": ["b", "a", "a", "a", "a", "a"],
            "time": [1, 2, 1, 2, 3, 4],
            "s1": [1.0, np.inf, 1.0, nan, 3.0, 4.0],
            "s2": [0.0, 1.0, 2.0, 3.0, nan, 5.0],
        }
    )
    before = frame.copy()
    t = SensorTable(frame, "asset", "time", ["s1", "s2"])
    with caplog.at_level(logging.INFO, logger="plantml.data.cleaning"):
        out, report = clean(t)
    pd.testing.assert_frame_equal(frame, before)
    assert t.segment_column is None
    f = out.frame
    assert f["asset"].tolist() == ["a", "a", "a", "a", "b"]
    assert f["s1"].tolist() == [1.0, 1.0, 3.0, 4.0, 1.0]  # dup at time 2: inf -> NaN, then NaN
    assert f["s2"].tolist() == [2.0, 1.0, 1.0, 5.0, 0.0]
    assert report.steps["sort"] == {"out_of_order": 5}
    assert report.steps["non_finite"]["replaced"] == 1
    assert report.steps["dedupe"]["rows_removed"] == 1
    assert [line.split(":")[0] for line in report.lines()] == list(DEFAULT_CONFIG)
    assert "sort: 5 rows were out of (asset, time) order" in caplog.text
    assert report.to_dict()["fill"]["filled"] == 2


def test_align_period_that_is_not_a_duration():
    t = table(
        {
            "asset": ["a", "a"],
            "time": pd.to_datetime(["2024-01-01 00:00", "2024-01-01 01:00"]),
            "s1": [1.0, 2.0],
        }
    )
    with pytest.raises(ConfigError, match="not a duration"):
        clean(t, {**only(), "align": {"period": "one hour"}})
