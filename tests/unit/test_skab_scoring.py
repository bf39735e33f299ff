"""SKAB's point scoring conventions and per-asset thresholds from each asset's head."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from plantml.errors import ConfigError
from plantml.evaluation.skab import binary_scores, head_thresholds, point_labels, score_split


def skab_loop(window_alarm_by_start: np.ndarray, n_rows: int, steps: int) -> np.ndarray:
    """The reference detectors' loop, written out: windows indexed by their first row."""
    labels = np.zeros(n_rows, dtype=np.int8)
    n_windows = n_rows - steps + 1
    for idx in range(steps - 1, n_windows - steps + 1):
        if np.all(window_alarm_by_start[idx - steps + 1 : idx]):
            labels[idx] = 1
    return labels


def test_point_labels_need_a_full_run_of_alarmed_windows():
    alarm = np.zeros(12, bool)
    alarm[4:10] = True  # windows ending at rows 4..9 (length 3)
    np.testing.assert_array_equal(point_labels(alarm, 12, 3), [0, 0, 0, 0, 1, 1, 1, 1, 0, 0, 0, 0])


@pytest.mark.parametrize("steps", [2, 5, 60])
def test_point_labels_match_the_reference_loop(steps):
    rng = np.random.default_rng(steps)
    n_rows = 700
    by_start = rng.random(n_rows - steps + 1) < 0.93  # long alarmed stretches
    by_end = np.zeros(n_rows, bool)
    by_end[steps - 1 :] = by_start  # the window starting at s ends at s + steps - 1
    got = point_labels(by_end, n_rows, steps)
    np.testing.assert_array_equal(got, skab_loop(by_start, n_rows, steps))
    assert got.sum() > 0


def test_binary_scores_are_skabs_formulas():
    truth = np.array([1, 1, 1, 1, 0, 0, 0, 0, 0, 0])
    label = np.array([1, 1, 0, 0, 1, 0, 0, 0, 0, 0])
    s = binary_scores(truth, label)
    assert s["f1"] == pytest.approx(2 / (2 + (2 + 1) / 2))
    assert s["far"] == pytest.approx(1 / 6) and s["mar"] == pytest.approx(2 / 4)


def test_head_thresholds_and_per_asset_scoring():
    scores = np.r_[np.linspace(0, 1, 100), np.linspace(0, 10, 100)]
    assets = np.r_[np.zeros(100), np.ones(100)].astype(int)
    thr = head_thresholds(scores, assets, quantile=0.5, margin=2.0)
    assert thr == pytest.approx({0: 1.0, 1: 10.0})
    with pytest.raises(ConfigError, match=r"skab\.quantile"):
        head_thresholds(scores, assets, quantile=1.0)
    # two assets, 20 test rows each (rows 0-19 and 20-39), windows of 3 rows, scores 5
    # everywhere: asset 0 alarms against its threshold 1, asset 1 never (threshold 10)
    ends = np.r_[np.arange(2, 20), np.arange(22, 40)]
    out = {
        "end": torch.from_numpy(ends),
        "asset": torch.from_numpy(np.r_[np.zeros(18), np.ones(18)].astype(int)),
        "pred": torch.full((36,), 5.0),
    }
    truth = np.zeros(40)
    truth[5:15] = 1
    res = score_split(out, truth, 3, thr)
    assert res["tp"] == 10 and res["fp"] == 4  # asset 0: rows 2..15 labelled (T - 2N + 1)
    assert res["fn"] == 0 and res["tn"] == 26
    glob = score_split(out, truth, 3, 20.0)
    assert glob["tp"] == 0 and glob["fn"] == 10
    with pytest.raises(ConfigError, match="at least 2 rows"):
        point_labels(np.ones(5, bool), 5, 1)
