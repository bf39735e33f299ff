"""The edge runtime rebuilds exactly the windows the training pipeline trained on.

A real :class:`DataPipeline` prepares a generated fleet; :func:`input_manifest`
describes it in a bundle; the pipeline's cleaned rows, written to CSV, go
through the runtime; its normalized windows must equal the pipeline's
(``WindowDataset.gather``) for the same window ends, segment breaks included.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from plantml.data.pipeline import DataPipeline
from plantml.data.sources.base import Source
from plantml.data.table import SensorTable
from plantml.data.windows import WindowDataset
from plantml.edge import EdgeModel, StreamingPredictor
from plantml.edge.bundle import write_manifest
from plantml.edge.io import iter_csv, read_csv
from plantml.export.manifest import input_manifest
from tests.bundles import onnx_model
from tests.conftest import make_fleet

LENGTH = 6


class Fixed(Source):
    def __init__(self, table: SensorTable):
        self.table = table

    def load(self, split: str = "train") -> SensorTable:
        return self.table


def column_case() -> tuple[SensorTable, dict, dict]:
    """Numeric cycles, a condition column, a run of missing values too long to fill."""
    table = make_fleet(n_assets=8, rows=(40, 60), seed=2)
    frame = table.frame.copy()
    rng = np.random.default_rng(0)
    frame["load"] = rng.choice([1, 2], size=len(frame))
    first_of_asset2 = int(np.flatnonzero(frame["unit"].to_numpy() == 2)[0])
    frame.loc[first_of_asset2 + 20 : first_of_asset2 + 24, "s1"] = np.nan  # 5 > fill.max_gap
    table = table.replace(frame=frame, condition_column="load")
    return table, {}, {"column": "load"}


def cluster_case() -> tuple[SensorTable, dict, dict]:
    """Hourly timestamps aligned to a 1 h grid, three operating regimes clustered."""
    table = make_fleet(n_assets=8, rows=(40, 60), seed=3, settings=True)
    frame = table.frame.copy()
    frame["cycle"] = pd.Timestamp("2024-01-01") + pd.to_timedelta(frame["cycle"], unit="h")
    first_of_asset3 = int(np.flatnonzero(frame["unit"].to_numpy() == 3)[0])
    frame.loc[first_of_asset3 + 15 : first_of_asset3 + 21, "s2"] = np.nan
    cleaning = {"align": {"period": "1h"}}
    return table.replace(frame=frame), cleaning, {"n_clusters": 3}


def jitter_case() -> tuple[SensorTable, dict, dict]:
    """Cycles logged with jitter: mostly 1 apart, every 7th step 2 (like SKAB's 1 s / 2 s)."""
    table = make_fleet(n_assets=8, rows=(40, 60), seed=4)
    frame = table.frame.copy()
    steps = np.where(np.arange(len(frame)) % 7 == 0, 2, 1)
    first = np.r_[True, frame["unit"].to_numpy()[1:] != frame["unit"].to_numpy()[:-1]]
    steps[first] = 1
    frame["cycle"] = pd.Series(steps).groupby(frame["unit"].to_numpy()).cumsum().to_numpy()
    return table.replace(frame=frame), {}, {}


def build(tmp_path, case):
    table, cleaning, conditions = case()
    pipeline = DataPipeline(
        Fixed(table),
        cleaning=cleaning,
        conditions=conditions,
        scaling={"per_condition": True},
        split_by={"val_fraction": 0.25, "test_fraction": 0.25},
        window={"length": LENGTH},
        target={"kind": "rul"},
    )
    data = pipeline.prepare()
    blocks = input_manifest(data, cleaning)
    n_features = len(data.feature_names)
    weights = np.random.default_rng(1).normal(0, 1, LENGTH * n_features)
    folder = tmp_path / "bundle"
    folder.mkdir()
    onnx_model(folder / "model.onnx", LENGTH, n_features, weights)
    manifest = {
        "format": "plantml-edge-bundle",
        "format_version": 1,
        "name": "pipeline-test",
        "version": "1",
        "created": "2024-01-01T00:00:00Z",
        "plantml_version": "0.1.0",
        "model": {"file": "model.onnx", "input": "window", "output": "prediction", "opset": 17},
        **blocks,
        "task": {"kind": "rul", "output_name": "rul", "unit": "cycles", "threshold": None},
        "lineage": {},
        "metrics": {},
    }
    write_manifest(folder, json.loads(json.dumps(manifest)))  # plain JSON types only
    return data, blocks, folder, weights


@pytest.mark.parametrize(
    "case", [column_case, cluster_case, jitter_case], ids=["column", "cluster", "jitter"]
)
def test_runtime_windows_equal_the_training_windows(tmp_path, case):
    data, blocks, folder, weights = build(tmp_path, case)
    inp, table = blocks["input"], data.table
    frame = data.frame
    if case is jitter_case:
        # training windows held 2-cycle steps, so the device must not restart at them
        assert (inp["sampling_period"], inp["max_gap"]) == (1.0, 3.0)
    else:
        assert data.frame["segment"].max() >= 1  # the injected gap split one asset
    if case is column_case:
        assert (inp["time_kind"], inp["sampling_period"], inp["max_gap"]) == ("number", 1.0, 1.5)
        assert blocks["conditions"]["mode"] == "column"
    elif case is cluster_case:
        assert (inp["time_kind"], inp["sampling_period"], inp["max_gap"]) == (
            "datetime",
            3600.0,
            5400.0,
        )
        assert blocks["conditions"]["mode"] == "cluster"
    assert inp["feature_columns"] == data.feature_names and inp["window_length"] == LENGTH

    segmented = (
        frame.loc[frame["segment"] > 0, table.asset_column].unique().tolist()
        if "segment" in frame
        else []
    )
    chosen = sorted({*segmented, *frame[table.asset_column].unique()[:3].tolist()})
    sub = frame[frame[table.asset_column].isin(chosen)]
    model = EdgeModel(folder)
    csv_path = tmp_path / "rows.csv"
    sub[model.bundle.required_columns].to_csv(csv_path, index=False)
    rows = read_csv(csv_path)
    win = model.windows_for_rows(rows)
    assert not win.errors
    frame_rows = sub.index.to_numpy()[win.rows]  # the frame row of each edge window's end
    edge = dict(zip(frame_rows.tolist(), win.windows(), strict=True))

    n_compared = 0
    for split, index in data.windows.items():
        keep = np.isin(index.ends, sub.index.to_numpy())
        ends = index.ends[keep]
        expected = WindowDataset(data.features, index, data.window_length).gather(
            np.flatnonzero(keep)
        )
        for end, window in zip(ends.tolist(), expected, strict=True):
            np.testing.assert_array_equal(edge[end], window, err_msg=f"{split} end {end}")
        np.testing.assert_array_equal(
            win.condition[np.isin(frame_rows, ends)], index.conditions[keep]
        )
        n_compared += len(ends)
    assert n_compared == len(edge) > 50  # every edge window is a training window, and back

    out, errors = model.predict_rows(rows, batch_size=16)
    assert not errors
    flat = win.windows().reshape(len(win), -1).astype(np.float64)
    np.testing.assert_allclose(out["rul"], flat @ weights, rtol=1e-4, atol=1e-4)
    names = [data.condition_names[c] for c in data.conditions.assign(data.table)[frame_rows]]
    assert out["condition"] == names

    preds, stream_errors = StreamingPredictor(model).feed_many(iter_csv(csv_path))
    assert not stream_errors
    np.testing.assert_allclose([p.value for p in preds], out["rul"], rtol=1e-6, atol=1e-6)


def test_stride_and_cleaning_config_reach_the_manifest():
    table, _, conditions = column_case()
    data = DataPipeline(
        Fixed(table), conditions=conditions, window={"length": LENGTH}, target={"kind": "rul"}
    ).prepare()
    blocks = input_manifest(data, {"align": {"period": 2}}, stride=3)
    assert blocks["input"]["stride"] == 3
    assert (blocks["input"]["sampling_period"], blocks["input"]["max_gap"]) == (2.0, 3.0)
    assert blocks["normalization"]["offset"] == data.scaler.state()["offset"]
    assert blocks["input"]["dtypes"] == dict.fromkeys(data.feature_names, "float32")
