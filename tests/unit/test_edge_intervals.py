"""Bundles with conformal RUL intervals: rul_low / rul_high on the device, batch and stream."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from plantml.edge import BundleError, EdgeModel, StreamingPredictor, load_bundle
from tests.bundles import make_bundle
from tests.unit.test_edge_runtime import columns, fleet_rows

CONDITIONS = {"mode": "column", "column": "load", "names": ["1", "2"], "categories": ["1", "2"]}


def _interval(by="condition", lead=None, widths=(1.0, 3.0, 2.0), floor=0.0):
    return {
        "interval": {
            "method": "split_conformal",
            "level": 0.9,
            "by": by,
            "half_width": list(widths),
            "floor": floor,
            "alarm_lead_time": lead,
            "calibration_windows": 100,
        }
    }


def _rows():
    rows = fleet_rows(n_assets=2, n=9)
    for i, r in enumerate(rows):
        r["load"] = ["1", "2", "7"][i % 3]  # 7: unseen, uses the global (last) width
    return rows


@pytest.mark.parametrize("by", ["condition", "none"])
def test_predict_and_stream_add_the_interval(tmp_path, by):
    rows = _rows()
    first = make_bundle(
        tmp_path / "a",
        conditions=CONDITIONS,
        per_condition=True,
        task=_interval(by, floor=None),
    )
    lead = float(np.median(EdgeModel(first).predict_rows(columns(rows))[0]["score_low"]))
    d = make_bundle(
        tmp_path / "b",
        conditions=CONDITIONS,
        per_condition=True,
        task=_interval(by, lead=lead, floor=None),
    )
    model = EdgeModel(d)
    out, errors = model.predict_rows(columns(rows))
    assert not errors and len(out["score"]) > 0
    width = (
        {"1": 1.0, "2": 3.0, "unseen": 2.0}
        if by == "condition"
        else dict.fromkeys(["1", "2", "unseen"], 2.0)
    )
    q = np.array([width[c] for c in out["condition"]])
    np.testing.assert_allclose(out["score_high"], out["score"] + q, rtol=1e-6)
    np.testing.assert_allclose(out["score_low"], out["score"] - q, rtol=1e-6)  # no floor
    np.testing.assert_array_equal(out["alarm"], (out["score_low"] <= lead).astype(np.int8))
    assert 0 < out["alarm"].sum() < len(out["alarm"])  # the lower-bound rule, not all or none
    stream = StreamingPredictor(model)
    predictions, _ = stream.feed_many(rows)
    batch = {
        (a, str(t)): (lo, hi, al)
        for a, t, lo, hi, al in zip(
            out["asset"],
            out["time"],
            out["score_low"],
            out["score_high"],
            out["alarm"],
            strict=True,
        )
    }
    assert len(predictions) == len(batch)
    for p in predictions:  # the stream interleaves assets; compare by (asset, time)
        lo, hi, al = batch[(p.asset, str(p.time))]
        assert p.low == pytest.approx(lo, rel=1e-6) and p.high == pytest.approx(hi, rel=1e-6)
        assert int(p.alarm) == al


def test_the_floor_clips_the_lower_bound(tmp_path):
    d = make_bundle(tmp_path / "b", conditions=CONDITIONS, task=_interval(floor=0.0))
    out, _ = EdgeModel(d).predict_rows(columns(_rows()))
    assert out["score_low"].min() == 0.0 and (out["score"] < 3).any()


def test_bundles_without_an_interval_load_as_before(tmp_path):
    model = EdgeModel(make_bundle(tmp_path / "b"))
    out, _ = model.predict_rows(columns(fleet_rows(n_assets=1, n=5)))
    assert "score_low" not in out and "alarm" not in out
    assert model.bundle.interval is None


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (_interval(widths=(1.0, 2.0)), r"half_width has shape \(1, 2\), expected \(1, 3\)"),
        (_interval(widths=(1.0, -2.0, 1.0)), "negative"),
        (_interval(by="asset"), "not none or condition"),
        (_interval(lead="soon"), "alarm_lead_time must be a number"),
    ],
)
def test_bad_intervals_are_refused(tmp_path, extra, message):
    with pytest.raises(BundleError, match=message):
        load_bundle(make_bundle(tmp_path / "b", conditions=CONDITIONS, task=extra))


def test_cli_stream_and_info_show_the_interval(tmp_path):
    d = make_bundle(
        tmp_path / "b", conditions=CONDITIONS, per_condition=True, task=_interval(lead=0.5)
    )
    info = subprocess.run(
        [sys.executable, "-m", "plantml.cli.edge", "info", "--bundle", str(d)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "90 % conformal (per condition): score_low, score_high" in info
    assert "alarm:       score_low <= 0.5" in info
