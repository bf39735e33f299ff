"""The assembled pipeline: leak-free windows, train-only statistics, targets at window ends."""

from __future__ import annotations

import numpy as np

from plantml.data.pipeline import DataPipeline
from plantml.data.sources.base import Source
from tests.conftest import make_fleet


class Fixed(Source):
    def __init__(self, table):
        self.table = table

    def load(self, split="train"):
        return self.table


def prepare(table=None, **kw):
    defaults = {
        "split_by": {"val_fraction": 0.25, "test_fraction": 0.25},
        "window": {"length": 8},
        "target": {"kind": "rul"},
    }
    return DataPipeline(Fixed(table or make_fleet(n_assets=12)), **{**defaults, **kw}).prepare()


def test_no_asset_has_windows_in_two_splits():
    data = prepare()
    assets = {split: set(idx.assets.tolist()) for split, idx in data.windows.items()}
    assert (
        not assets["train"] & assets["val"]
        and not assets["train"] & assets["test"]
        and not assets["val"] & assets["test"]
    )
    assert all(assets.values())
    # every row of every window belongs to the window's own asset
    frame_assets = data.frame["unit"].astype(str).to_numpy()
    for idx in data.windows.values():
        starts = idx.ends - 7
        assert (frame_assets[starts] == frame_assets[idx.ends]).all()


def test_scaling_statistics_come_from_training_rows_only():
    table = make_fleet(n_assets=12)
    data = prepare(table)
    train_assets = {data.asset_names[a] for a in data.windows["train"].assets}
    train_rows = table.frame["unit"].astype(str).isin(train_assets).to_numpy()
    raw = table.frame[data.feature_names].to_numpy()
    np.testing.assert_allclose(data.scaler.offset[-1], raw[train_rows].mean(0))
    assert abs(data.features[train_rows].mean()) < 1e-5


def test_targets_are_the_rul_at_each_window_end():
    data = prepare(target={"kind": "rul", "rul_cap": 50})
    idx = data.windows["val"]
    frame = data.frame
    last = frame.groupby("unit")["cycle"].transform("max").to_numpy()
    expected = np.minimum(last[idx.ends] - frame["cycle"].to_numpy()[idx.ends], 50)
    np.testing.assert_array_equal(idx.targets, expected)


def test_last_only_scores_one_window_per_held_out_asset():
    data = prepare(window={"length": 8, "last_only": True})
    for split in ("val", "test"):
        idx = data.windows[split]
        assert len(idx) == len(set(idx.assets.tolist())) == 3
        assert (idx.targets == 0).all()  # the last window of a run-to-failure asset
    assert len(data.windows["train"]) > 6 * 10


def test_temporal_split_windows_never_cross_the_cut():
    from plantml.data.splits import SPLIT_CODES, split_rows

    table = make_fleet(n_assets=12)
    split_by = {"method": "temporal", "val_fraction": 0.2, "test_fraction": 0.2}
    data = prepare(table, split_by=split_by)
    codes = split_rows(data.table, **split_by)
    for split, idx in data.windows.items():
        assert len(idx) > 0
        for offset in range(8):  # every row of every window lies in the window's split
            assert (codes[idx.ends - offset] == SPLIT_CODES[split]).all()
