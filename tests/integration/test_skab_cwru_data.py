"""SKAB and CWRU on the real files under ../shared/data (skipped when absent)."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from plantml.data.pipeline import DataPipeline
from plantml.data.sources.cwru import CWRUSource, estimate_rate
from plantml.data.sources.skab import SENSORS, SKABSource
from plantml.data.splits import split_rows

pytestmark = pytest.mark.real_data


@pytest.fixture
def skab(shared_data: Path) -> Path:
    return shared_data / "skab"


@pytest.fixture
def cwru(shared_data: Path) -> Path:
    return shared_data / "cwru"


def test_skab_loads_all_files(skab: Path) -> None:
    source = SKABSource(skab)
    table = source.load()
    assert len(table.assets()) == 17
    assert table.sensor_columns == SENSORS
    sizes = table.frame.groupby("asset").size()
    assert sizes["anomaly-free/anomaly-free"] == 9405
    assert sizes.drop("anomaly-free/anomaly-free").between(1000, 1200).all()
    labelled = table.frame[table.frame.asset != "anomaly-free/anomaly-free"]
    share = labelled.anomaly.mean()
    assert 0.3 < share < 0.45  # SKAB valve1: about 35-40 % anomalous rows
    assert labelled.changepoint.sum() >= 16  # changepoints where anomalies start and end


def test_skab_head_split(skab: Path) -> None:
    source = SKABSource(skab)
    table = source.load()
    codes = split_rows(
        table, "head", val_fraction=0.2, head_rows=400, normal_assets=source.normal_assets
    )
    frame = table.frame.assign(code=codes)
    for asset, rows in frame.groupby("asset"):
        if asset == "anomaly-free/anomaly-free":
            assert (rows.code != 2).all()
        else:
            assert (rows.code <= 1).sum() == 400 and (rows.code == 1).sum() == 80
            assert (rows.sort_values("datetime").code.iloc[:400] <= 1).all()


def test_cwru_loads_classes_and_rates(cwru: Path, caplog) -> None:
    source = CWRUSource(cwru)
    with caplog.at_level(logging.WARNING):
        table = source.load()
    assert not [r for r in caplog.records if "looks sampled" in r.message]
    frame = table.frame
    classes = frame.groupby("load_hp").fault.nunique()
    assert classes.to_dict() == {0: 10, 1: 9, 2: 9}
    assert source.rates_used["0HP/normal_0_97"] == 48000
    # the honest check: read at 12 kHz the 0 HP normal file's shaft line says ~48 kHz
    assert abs(source.rates_estimated["0HP/normal_0_97"] / 48000 - 1) < 0.02
    for asset, rate in source.rates_estimated.items():
        if asset != "0HP/normal_0_97":
            assert abs(rate / 12000 - 1) < 0.05, asset
    normal = frame[frame.asset == "0HP/normal_0_97"]
    assert len(normal) == 60985  # 243938 samples at 48 kHz -> 12 kHz
    _, rate = estimate_rate(normal.DE.to_numpy(), 12000, float(normal.rpm.iloc[0]))
    assert abs(rate / 12000 - 1) < 0.02


def test_cwru_normal_rate_under_both_assumptions(cwru: Path) -> None:
    source = CWRUSource(cwru, loads=[0], check_rate=False)
    arrays, rpm = source._read(cwru / "0HP" / "normal_0_97.mat")
    found = {fs: estimate_rate(arrays["DE"], fs, rpm)[1] for fs in (12000, 48000)}
    assert all(abs(r / 48000 - 1) < 0.02 for r in found.values()), found


def test_cwru_pipeline_cross_load(cwru: Path) -> None:
    pipeline = DataPipeline(
        CWRUSource(cwru, check_rate=False),
        cleaning={
            k: {"enabled": False} for k in ("dedupe", "non_finite", "clip", "fill", "drop_constant")
        },
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
    windows = data.windows
    assert len(windows["train"]) > 1500 and len(windows["val"]) > 300
    assert len(windows["test"]) > 900
    assert len(np.unique(windows["train"].targets)) == 10
    assert len(np.unique(windows["test"].targets)) == 9  # no normal recording at 2 HP
    test_conditions = {data.condition_names[c] for c in windows["test"].conditions}
    assert test_conditions == {"2"}
