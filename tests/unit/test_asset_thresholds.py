"""Thresholds each asset learns on the device from its first windows (task.asset_threshold)."""

from __future__ import annotations

import numpy as np
import pytest

from plantml.core.asset_threshold import asset_thresholds, learned_threshold
from plantml.edge import BundleError, EdgeModel, StreamingPredictor, load_bundle
from tests.bundles import make_bundle
from tests.unit.test_edge_runtime import columns, fleet_rows

SPEC = {"windows": 4, "quantile": 0.5, "margin": 1.5}


def test_each_asset_calibrates_on_its_own_first_windows():
    assets = np.array(["a", "b", "a", "a", "b", "a", "a", "b"])
    values = np.array([1.0, 10.0, 3.0, 2.0, 20.0, 4.0, 9.0, 30.0])
    thr = asset_thresholds(assets, values, {"windows": 3, "quantile": 0.5, "margin": 2.0})
    # a: first three windows 1, 3, 2 (median 2, x2 = 4) ; b has only 3 windows: calibrating
    np.testing.assert_array_equal(np.isnan(thr), [1, 1, 1, 1, 1, 0, 0, 1])
    assert thr[5] == thr[6] == 4.0
    assert learned_threshold(np.array([1.0, 2.0, 3.0]), 0.5, 2.0) == 4.0


def test_batch_and_stream_learn_the_same_thresholds(tmp_path):
    d = make_bundle(tmp_path / "b", task={"asset_threshold": SPEC}, threshold=0.0)
    rows = fleet_rows(n_assets=3, n=14)
    model = EdgeModel(d)
    out, _ = model.predict_rows(columns(rows))
    thr = np.asarray(out["threshold"])
    values = np.asarray(out["score"])
    for asset in set(out["asset"]):
        mine = np.array(out["asset"]) == asset
        first = values[mine][:4]
        assert np.isnan(thr[mine][:4]).all() and (np.asarray(out["alarm"])[mine][:4] == 0).all()
        expected = 1.5 * np.quantile(first.astype(np.float64), 0.5)
        assert thr[mine][4:] == pytest.approx(expected)
        np.testing.assert_array_equal(
            np.asarray(out["alarm"])[mine][4:], (values[mine][4:] >= expected).astype(int)
        )
    stream = StreamingPredictor(model)
    predictions, _ = stream.feed_many(rows)
    batch = {
        (a, str(t)): al for a, t, al in zip(out["asset"], out["time"], out["alarm"], strict=True)
    }
    assert [int(p.alarm) for p in predictions] == [
        batch[(p.asset, str(p.time))] for p in predictions
    ]
    assert stream.learned_thresholds.keys() == set(out["asset"])
    stream.reset(out["asset"][0])  # a reset asset calibrates again
    assert out["asset"][0] not in stream.learned_thresholds


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"windows": 0, "quantile": 0.5, "margin": 1.0}, "windows must be an integer"),
        ({"windows": 3, "quantile": 1.5, "margin": 1.0}, r"quantile must be in \(0, 1\)"),
        ({"windows": 3, "quantile": 0.5, "margin": -1}, "margin must be > 0"),
    ],
)
def test_bad_asset_threshold_specs_are_refused(tmp_path, spec, message):
    with pytest.raises(BundleError, match=message):
        load_bundle(make_bundle(tmp_path / "b", task={"asset_threshold": spec}))


def test_cli_stream_and_info_show_the_learned_thresholds(tmp_path):
    import csv
    import subprocess
    import sys

    d = make_bundle(tmp_path / "b", task={"asset_threshold": SPEC}, threshold=0.0)
    rows = fleet_rows(n_assets=2, n=10)
    path = tmp_path / "rows.csv"
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    run = [sys.executable, "-m", "plantml.cli.edge"]
    info = subprocess.run(
        [*run, "info", "--bundle", str(d)], capture_output=True, text=True, check=True
    ).stdout
    assert "learns its threshold on its first 4 windows: 1.5 x their 0.5 quantile" in info
    out = subprocess.run(
        [*run, "stream", "--bundle", str(d), "--input", str(path)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    assert out[0].endswith("threshold,alarm")
    first = [line.split(",") for line in out[1:] if line.startswith(rows[0]["unit"] + ",")]
    assert all(cells[-2] == "" and cells[-1] == "0" for cells in first[:4])  # calibrating
    assert all(cells[-2] != "" for cells in first[4:])
