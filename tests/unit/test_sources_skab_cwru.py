"""SKAB and CWRU readers, the head / condition splits and class targets, on tiny built files."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.io import savemat

from plantml.data.pipeline import DataPipeline
from plantml.data.sources.cwru import CWRUSource, estimate_rate, parse_class
from plantml.data.sources.skab import SENSORS, SKABSource
from plantml.data.splits import split_rows
from plantml.data.table import SensorTable
from plantml.data.targets import class_names, row_targets
from plantml.errors import ConfigError, DataError

RPM = 1797.0


def _skab_file(path: Path, n: int, labels: bool, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {"datetime": pd.date_range("2020-03-09 10:00:00", periods=n, freq="s").astype(str)}
    )
    for s in SENSORS:
        frame[s] = rng.normal(size=n)
    if labels:
        frame["anomaly"] = (np.arange(n) >= n // 2).astype(float)
        frame["changepoint"] = (np.arange(n) == n // 2).astype(float)
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(path, sep=";", index=False)


@pytest.fixture
def skab_root(tmp_path: Path) -> Path:
    root = tmp_path / "skab"
    _skab_file(root / "anomaly-free" / "anomaly-free.csv", 50, labels=False)
    for i in range(3):
        _skab_file(root / "valve1" / f"{i}.csv", 30 + i, labels=True, seed=i)
    _skab_file(root / "valve2" / "0.csv", 25, labels=True, seed=9)
    return root


def test_skab_columns_roles_and_assets(skab_root: Path) -> None:
    source = SKABSource(skab_root)
    table = source.load()
    assert table.sensor_columns == SENSORS
    assert table.anomaly_column == "anomaly" and table.time_column == "datetime"
    assert "changepoint" in table.frame.columns and "changepoint" not in table.sensor_columns
    assert table.is_timestamped and table.time_unit == "s"
    assets = list(table.assets())
    assert assets == ["anomaly-free/anomaly-free", "valve1/0", "valve1/1", "valve1/2", "valve2/0"]
    free = table.frame[table.frame.asset == "anomaly-free/anomaly-free"]
    assert len(free) == 50 and (free.anomaly == 0).all() and (free.changepoint == 0).all()
    assert table.frame.groupby("asset").size()["valve1/2"] == 32
    assert source.normal_assets == ["anomaly-free/anomaly-free"]


def test_skab_groups_and_errors(skab_root: Path, tmp_path: Path) -> None:
    table = SKABSource(skab_root, groups=["valve2"]).load()
    assert list(table.assets()) == ["valve2/0"]
    with pytest.raises(ConfigError, match="anomaly-free, valve1, valve2"):
        SKABSource(skab_root, groups=["valve9"]).load()
    with pytest.raises(DataError, match=r"does not exist.*holds: skab"):
        SKABSource(tmp_path / "nowhere").load()
    bad = tmp_path / "bad"
    (bad / "valve1").mkdir(parents=True)
    pd.DataFrame({"datetime": ["2020-01-01"], "x": [1.0]}).to_csv(
        bad / "valve1" / "0.csv", sep=";", index=False
    )
    with pytest.raises(DataError, match="lacks the SKAB columns"):
        SKABSource(bad).load()


def _tone_file(path: Path, number: int, rate: int, seconds: float, rpm: float = RPM) -> None:
    """Vibration with shaft lines at 1x and 2x rpm/60, a 3 kHz resonance and noise."""
    rng = np.random.default_rng(number)
    t = np.arange(int(rate * seconds)) / rate
    f = rpm / 60
    x = (
        np.sin(2 * np.pi * f * t)
        + 0.5 * np.sin(2 * np.pi * 2 * f * t + 0.3)
        + 0.3 * np.sin(2 * np.pi * 3000 * t)
        + 0.2 * rng.normal(size=len(t))
    )
    key = f"X{number:03d}"
    path.parent.mkdir(parents=True, exist_ok=True)
    savemat(
        path,
        {
            f"{key}_DE_time": x[:, None],
            f"{key}_FE_time": 0.5 * x[:, None],
            f"{key}RPM": np.array([[rpm]]),
        },
    )


@pytest.fixture
def cwru_root(tmp_path: Path) -> Path:
    root = tmp_path / "cwru"
    _tone_file(root / "0HP" / "normal_0_97.mat", 97, 48000, 2.0)
    _tone_file(root / "0HP" / "12k_Drive_End_IR007_0_105.mat", 105, 12000, 2.0)
    _tone_file(root / "0HP" / "12k_Drive_End_OR021@6_0_234.mat", 234, 12000, 2.0)
    _tone_file(root / "1HP" / "12k_Drive_End_B014_1_186.mat", 186, 12000, 2.0, rpm=1772.0)
    _tone_file(root / "2HP" / "12k_Drive_End_IR007_2_107.mat", 107, 12000, 2.0, rpm=1750.0)
    return root


def test_parse_class() -> None:
    assert parse_class("normal_0_97") == ("normal", "normal", 0.0)
    assert parse_class("12k_Drive_End_IR007_1_106") == ("IR007", "inner", 0.007)
    assert parse_class("12k_Drive_End_B014_0_185") == ("B014", "ball", 0.014)
    assert parse_class("12k_Drive_End_OR021@6_0_234") == ("OR021", "outer", 0.021)
    with pytest.raises(DataError, match="cannot read the fault class"):
        parse_class("mystery_file")


def test_cwru_table_resampling_and_rate_check(cwru_root: Path, caplog) -> None:
    source = CWRUSource(cwru_root, channels=("DE", "FE"))
    with caplog.at_level(logging.WARNING):
        table = source.load()
    assert not [r for r in caplog.records if "looks sampled" in r.message]
    assert table.sensor_columns == ["DE", "FE"] and table.setting_columns == ["rpm"]
    assert table.condition_column == "load_hp" and table.time_unit == "s"
    frame = table.frame
    sizes = frame.groupby("asset").size()
    assert sizes["0HP/normal_0_97"] == 24000  # 2 s at 48 kHz -> 12 kHz
    assert sizes["0HP/12k_Drive_End_IR007_0_105"] == 24000
    assert source.rates_used["0HP/normal_0_97"] == 48000
    assert abs(source.rates_estimated["0HP/normal_0_97"] / 48000 - 1) < 0.02
    normal = frame[frame.asset == "0HP/normal_0_97"]
    assert normal.time.iloc[1] == pytest.approx(1 / 12000)
    # the shaft line keeps its frequency (Hz) through the resampling
    apparent, rate = estimate_rate(normal.DE.to_numpy(), 12000, RPM)
    assert apparent == pytest.approx(RPM / 60, rel=0.01) and rate == pytest.approx(12000, rel=0.01)
    row = frame[frame.asset == "0HP/12k_Drive_End_OR021@6_0_234"].iloc[0]
    assert (row.fault, row.fault_type, row.fault_diameter, row.load_hp) == (
        "OR021",
        "outer",
        pytest.approx(0.021),
        0,
    )
    assert set(frame.load_hp) == {0, 1, 2}


def test_cwru_rate_check_warns_on_wrong_rate(cwru_root: Path, caplog) -> None:
    source = CWRUSource(cwru_root, loads=[0], rates={})
    with caplog.at_level(logging.WARNING):
        table = source.load()
    warned = [r.message for r in caplog.records if "looks sampled" in r.message]
    assert len(warned) == 1 and "normal_0_97" in warned[0]
    assert abs(source.rates_estimated["0HP/normal_0_97"] / 48000 - 1) < 0.02
    assert table.frame.groupby("asset").size()["0HP/normal_0_97"] == 96000  # not resampled


def test_cwru_errors(cwru_root: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"loads in .* are: 0, 1, 2"):
        CWRUSource(cwru_root, loads=[3]).load()
    with pytest.raises(DataError, match="does not exist"):
        CWRUSource(tmp_path / "none").load()
    with pytest.raises(DataError, match="no BA channel"):
        CWRUSource(cwru_root, loads=[1], channels=["BA"]).load()
    with pytest.raises(ConfigError, match="unknown CWRU channels"):
        CWRUSource(cwru_root, channels=["XX"])


def _table(n_assets: int = 3, rows: int = 20) -> SensorTable:
    frames = []
    for a in range(n_assets):
        frames.append(
            pd.DataFrame(
                {
                    "asset": f"a{a}",
                    "time": np.arange(rows, dtype=float)[::-1],  # reversed: order is by time
                    "s": np.arange(rows, dtype=float),
                    "load": a % 3,
                    "fault": ["x", "y", "z"][a % 3],
                }
            )
        )
    frame = pd.concat(frames, ignore_index=True)
    return SensorTable(frame, "asset", "time", ["s"], condition_column="load", name="t")


def test_head_split() -> None:
    table = _table(rows=20)
    codes = split_rows(table, "head", val_fraction=0.25, head_rows=8, normal_assets=["a2"])
    frame = table.frame.assign(code=codes)
    a0 = frame[frame.asset == "a0"].sort_values("time")
    assert a0.code.tolist() == [0] * 6 + [1] * 2 + [2] * 12
    a2 = frame[frame.asset == "a2"].sort_values("time")
    assert a2.code.tolist() == [0] * 15 + [1] * 5
    with pytest.raises(ConfigError, match="head_rows"):
        split_rows(table, "head")
    with pytest.raises(ConfigError, match="unknown assets"):
        split_rows(table, "head", head_rows=4, normal_assets=["zz"])


def test_condition_split() -> None:
    table = _table(n_assets=4, rows=10)
    codes = split_rows(table, "condition", val_fraction=0.2, test_values=[2])
    frame = table.frame.assign(code=codes)
    assert (frame[frame.load == 2].code == 2).all()
    a0 = frame[frame.asset == "a0"].sort_values("time")
    assert a0.code.tolist() == [0] * 8 + [1] * 2
    codes = split_rows(table, "condition", test_values=["2"], train_values=[0], column="load")
    assert set(codes[table.frame.load.to_numpy() == 1]) == {-1}
    with pytest.raises(DataError, match="not among the values"):
        split_rows(table, "condition", test_values=[7])
    with pytest.raises(ConfigError, match="test_values is empty"):
        split_rows(table, "condition")
    with pytest.raises(ConfigError, match="share"):
        split_rows(table, "condition", test_values=[2], train_values=[1, 2])


def test_class_targets() -> None:
    table = _table(n_assets=3, rows=5)
    assert class_names(table, "fault") == ["x", "y", "z"]
    y = row_targets(table, "class", label_column="fault")
    assert y.dtype == np.float64 and set(y) == {0.0, 1.0, 2.0}
    y = row_targets(table, "class", label_column="fault", classes=["z", "x"])
    assert np.isnan(y[table.frame.fault == "y"]).all() and (y[table.frame.fault == "z"] == 0).all()
    with pytest.raises(DataError, match="not found"):
        row_targets(table, "class", label_column="nope")


def test_pipeline_cwru_cross_load(cwru_root: Path) -> None:
    pipeline = DataPipeline(
        CWRUSource(cwru_root),
        cleaning={k: {"enabled": False} for k in ("dedupe", "non_finite", "fill", "clip")},
        conditions={"column": "load_hp"},
        split_by={
            "method": "condition",
            "column": "load_hp",
            "train_values": [0, 1],
            "test_values": [2],
            "val_fraction": 0.2,
        },
        window={"length": 2048, "stride": 1024, "eval_stride": 1024},
        target={"kind": "class"},
    )
    data = pipeline.prepare()
    test = data.windows["test"]
    assert len(test) and set(np.asarray(data.condition_names)[test.conditions]) == {"2"}
    assert set(data.windows["train"].targets.tolist()) == {0.0, 1.0, 2.0, 3.0}  # 4 classes


def test_pipeline_skab_head(skab_root: Path) -> None:
    pipeline = DataPipeline(
        SKABSource(skab_root, groups=["anomaly-free", "valve1"]),
        split_by={"method": "head", "head_rows": 20, "val_fraction": 0.25},
        window={"length": 5},
        target={"kind": "anomaly"},
    )
    data = pipeline.prepare()
    test_assets = {data.asset_names[i] for i in data.windows["test"].assets}
    assert "anomaly-free/anomaly-free" not in test_assets  # normal_assets from the source
    assert test_assets == {"valve1/0", "valve1/1", "valve1/2"}
