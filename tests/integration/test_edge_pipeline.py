"""The edge runtime rebuilds exactly the windows the training pipeline trained on.

A real :class:`DataPipeline` prepares a generated fleet; :func:`input_manifest`
describes it in a bundle; the same raw rows, written to CSV, go through the
runtime; its window ends, normalized windows, condition codes and predictions
must equal the pipeline's (``WindowDataset.gather``) for strides 1, 2 and 5,
column and cluster conditions, unseen condition values and segment breaks.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from plantml.data.pipeline import DataPipeline
from plantml.data.sources.base import Source
from plantml.data.table import SensorTable
from plantml.data.windows import WindowDataset, WindowIndex
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
    """Hourly timestamps aligned to a 1 h grid, three operating regimes clustered,
    and 7 hours of one asset missing altogether (a logger outage)."""
    table = make_fleet(n_assets=8, rows=(40, 60), seed=3, settings=True)
    frame = table.frame.copy()
    frame["cycle"] = pd.Timestamp("2024-01-01") + pd.to_timedelta(frame["cycle"], unit="h")
    first_of_asset3 = int(np.flatnonzero(frame["unit"].to_numpy() == 3)[0])
    frame = frame.drop(index=range(first_of_asset3 + 15, first_of_asset3 + 22))
    # the device neither fills missing rows nor joins readings as-of from a neighbouring
    # bin (README, edge runtime limits), so here training does neither
    cleaning = {"align": {"period": "1h", "tolerance": "1s"}, "fill": {"max_gap": 0}}
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


def build(tmp_path, case, stride: int = 1):
    table, cleaning, conditions = case()
    pipeline = DataPipeline(
        Fixed(table),
        cleaning=cleaning,
        conditions=conditions,
        scaling={"per_condition": True},
        split_by={"val_fraction": 0.25, "test_fraction": 0.25},
        window={"length": LENGTH, "stride": stride, "eval_stride": stride},
        target={"kind": "rul"},
    )
    data = pipeline.prepare()
    blocks = input_manifest(data, cleaning, stride=stride)
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
    return table, data, blocks, folder, weights


def check_manifest(case, data, blocks) -> None:
    inp = blocks["input"]
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


def frame_row_of(raw, frame, asset_column: str, time_column: str) -> np.ndarray:
    """For each raw row, its row in the cleaned training frame (by asset and time; -1 if dropped)."""
    key = dict(
        zip(
            zip(frame[asset_column].tolist(), frame[time_column].tolist(), strict=True),
            range(len(frame)),
            strict=True,
        )
    )
    pairs = zip(raw[asset_column].tolist(), raw[time_column].tolist(), strict=True)
    return np.array([key.get(pair, -1) for pair in pairs], dtype=np.int64)


@pytest.mark.parametrize("stride", [1, 2, 5])
@pytest.mark.parametrize(
    "case", [column_case, cluster_case, jitter_case], ids=["column", "cluster", "jitter"]
)
def test_raw_rows_give_the_training_windows_and_predictions(tmp_path, case, stride):
    """The same raw rows through the training pipeline and through the edge runtime.

    Rows that cleaning drops (a run of missing values too long to fill) are rejected by
    the device, and the gap they leave restarts the window exactly where training
    started a new segment; with every stride the device emits exactly the windows
    training kept, with the same normalized values and predictions.
    """
    table, data, blocks, folder, weights = build(tmp_path, case, stride)
    check_manifest(case, data, blocks)
    frame, asset_col, time_col = data.frame, table.asset_column, table.time_column
    segmented = frame.loc[frame["segment"] > 0, asset_col].unique().tolist()
    chosen = sorted({*segmented, *frame[asset_col].unique()[:3].tolist()})
    raw = table.frame[table.frame[asset_col].isin(chosen)].reset_index(drop=True)
    model = EdgeModel(folder)
    csv_path = tmp_path / "rows.csv"
    raw[model.bundle.required_columns].to_csv(csv_path, index=False)
    rows = read_csv(csv_path)
    win = model.windows_for_rows(rows)
    to_frame = frame_row_of(raw, frame, asset_col, time_col)
    # the device rejects exactly the rows cleaning dropped
    assert sorted(e.row_number - 1 for e in win.errors) == np.flatnonzero(to_frame < 0).tolist()
    frame_rows = to_frame[win.rows]  # the training row of each device window's end
    assert (frame_rows >= 0).all()

    expected_ends, expected_windows, expected_codes = [], [], []
    for index in data.windows.values():
        keep = np.flatnonzero(np.isin(frame[asset_col].to_numpy()[index.ends], chosen))
        expected_ends.append(index.ends[keep])
        expected_codes.append(index.conditions[keep])
        expected_windows.append(
            WindowDataset(data.features, index, data.window_length).gather(keep)
        )
    ends = np.concatenate(expected_ends)
    order = np.argsort(ends)
    assert len(ends) > 15
    # identical window ends (every stride), window values and condition codes
    np.testing.assert_array_equal(np.sort(frame_rows), ends[order])
    by_end = np.argsort(frame_rows)
    np.testing.assert_array_equal(win.windows()[by_end], np.concatenate(expected_windows)[order])
    np.testing.assert_array_equal(win.condition[by_end], np.concatenate(expected_codes)[order])

    out, errors = model.predict_rows(rows, batch_size=16)
    assert len(errors) == len(win.errors)
    training = np.concatenate(expected_windows)[order].reshape(len(ends), -1).astype(np.float64)
    np.testing.assert_allclose(np.asarray(out["rul"])[by_end], training @ weights, atol=1e-5)
    names = [data.condition_names[c] for c in data.conditions.assign(data.table)[frame_rows]]
    assert out["condition"] == names

    preds, stream_errors = StreamingPredictor(model).feed_many(iter_csv(csv_path))
    assert len(stream_errors) == len(win.errors)
    np.testing.assert_allclose([p.value for p in preds], out["rul"], rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("stride", [1, 2])
def test_unseen_condition_values_use_global_statistics_on_both_sides(tmp_path, stride):
    """A condition value never seen in training: code -1 and global scaling, both sides."""
    table, data, _, folder, weights = build(tmp_path, column_case, stride)
    extra = make_fleet(n_assets=1, rows=(30, 31), seed=9).frame
    extra["unit"] = 99
    extra["load"] = np.where(np.arange(len(extra)) % 3 == 0, 7, 2)  # 7: never seen in training
    extra_table = table.replace(frame=extra)
    codes = data.conditions.assign(extra_table)
    assert (codes[extra["load"].to_numpy() == 7] == -1).all()
    features = data.scaler.transform(extra_table.frame[data.feature_names].to_numpy(), codes)
    from plantml.data.windows import run_starts, window_ends

    ends = window_ends(run_starts(extra["unit"].to_numpy()), LENGTH, stride)
    expected = WindowDataset(
        features,
        WindowIndex(ends, np.zeros(len(ends), np.float32), codes[ends], np.zeros(len(ends))),
        LENGTH,
    ).gather(np.arange(len(ends)))
    model = EdgeModel(folder)
    csv_path = tmp_path / "extra.csv"
    extra[model.bundle.required_columns].to_csv(csv_path, index=False)
    rows = read_csv(csv_path)
    win = model.windows_for_rows(rows)
    np.testing.assert_array_equal(win.rows, ends)
    np.testing.assert_array_equal(win.windows(), expected)
    out, _ = model.predict_rows(rows)
    flat = expected.reshape(len(ends), -1).astype(np.float64)
    np.testing.assert_allclose(out["rul"], flat @ weights, atol=1e-5)
    assert [c == "unseen" for c in out["condition"]] == (codes[ends] == -1).tolist()


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


def test_made_up_asset_ids_are_not_required_on_the_device():
    table, _, conditions = column_case()
    data = DataPipeline(
        Fixed(table.replace(asset_ids_given=False)),
        conditions=conditions,
        window={"length": LENGTH},
        target={"kind": "rul"},
    ).prepare()
    assert input_manifest(data, None)["input"]["asset_column"] is None
