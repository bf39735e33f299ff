"""Asset-level bootstrap intervals: against a naive loop, on a known distribution, edge cases."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch

from plantml.errors import ConfigError
from plantml.evaluation.bootstrap import (
    FAILURE_METRICS,
    RUL_METRICS,
    asset_bootstrap,
    bootstrap_by_group,
    bootstrap_samples,
)
from plantml.evaluation.metrics import classification_metrics, regression_metrics


def rul_data(n_assets: int = 12, seed: int = 0):
    """Assets with different window counts and an asset-level offset; ids not 0..n-1."""
    rng = np.random.default_rng(seed)
    sizes = rng.integers(3, 15, n_assets)
    assets = np.repeat(100 + 7 * rng.permutation(n_assets), sizes)
    target = rng.uniform(0, 120, len(assets))
    offset = rng.normal(0, 8, n_assets)
    pred = target + np.repeat(offset, sizes) + rng.normal(0, 5, len(assets))
    return pred, target, assets


def failure_data(n_assets: int = 10, seed: int = 0):
    """Positives in only two assets, so some resamples have none (recall undefined)."""
    rng = np.random.default_rng(seed)
    sizes = rng.integers(4, 12, n_assets)
    assets = np.repeat(np.arange(n_assets), sizes)
    target = np.isin(assets, [2, 7]) & (rng.uniform(size=len(assets)) < 0.6)
    prob = np.clip(0.35 * target + rng.uniform(0, 0.7, len(assets)), 0, 1)
    return prob, target.astype(np.int64), assets


def naive_resample_metrics(kind, pred, target, assets, counts, threshold=0.5):
    """Rebuild each resample explicitly and compute the metrics with plantml.evaluation.metrics."""
    labels = np.unique(assets)
    rows = []
    for row in counts:
        idx = np.concatenate(
            [np.flatnonzero(assets == labels[j]) for j in range(len(labels)) for _ in range(row[j])]
        )
        p, t = torch.from_numpy(pred[idx]), torch.from_numpy(target[idx])
        if kind == "rul":
            rows.append(regression_metrics(p, t))
        else:
            rows.append(classification_metrics(p, t, threshold))
    names = RUL_METRICS if kind == "rul" else FAILURE_METRICS
    return {m: np.array([np.nan if r[m] is None else r[m] for r in rows]) for m in names}


def test_rul_resamples_and_endpoints_match_naive_loop():
    pred, target, assets = rul_data()
    n_boot = 41  # quantiles 0.025 and 0.975 fall exactly on sorted values 1 and 39
    counts, samples = bootstrap_samples("rul", pred, target, assets, n_boot=n_boot, seed=3)
    n_assets = len(np.unique(assets))
    expected = np.random.default_rng(3).multinomial(
        n_assets, [1 / n_assets] * n_assets, size=n_boot
    )
    np.testing.assert_array_equal(counts, expected)
    assert (counts.sum(axis=1) == n_assets).all()

    naive = naive_resample_metrics("rul", pred, target, assets, counts)
    intervals = asset_bootstrap("rul", pred, target, assets, n_boot=n_boot, seed=3)
    point = regression_metrics(torch.from_numpy(pred), torch.from_numpy(target))
    for m in RUL_METRICS:
        np.testing.assert_allclose(samples[m], naive[m], rtol=1e-9)
        ordered = np.sort(naive[m])
        assert intervals[m] == pytest.approx((ordered[1], ordered[39]), rel=1e-9)
        low, high = asset_bootstrap("rul", pred, target, assets)[m]
        assert low <= point[m] <= high


def test_failure_resamples_skip_undefined_and_match_naive_loop():
    prob, target, assets = failure_data()
    counts, samples = bootstrap_samples("failure", prob, target, assets, n_boot=60, seed=1)
    naive = naive_resample_metrics("failure", prob, target, assets, counts)
    assert np.isnan(naive["recall"]).any()  # some resamples draw neither positive asset
    intervals = asset_bootstrap("failure", prob, target, assets, n_boot=60, seed=1)
    point = classification_metrics(torch.from_numpy(prob), torch.from_numpy(target), 0.5)
    for m in FAILURE_METRICS:
        np.testing.assert_allclose(samples[m], naive[m], rtol=1e-12)  # NaNs in the same places
        defined = naive[m][~np.isnan(naive[m])]
        assert intervals[m] == pytest.approx(tuple(np.quantile(defined, [0.025, 0.975])))
        low, high = asset_bootstrap("failure", prob, target, assets)[m]
        assert low <= point[m] <= high


def test_metric_undefined_in_most_resamples_is_none():
    prob, target, assets = failure_data()
    result = asset_bootstrap("failure", prob, target, assets, threshold=2.0)  # never an alarm
    assert result["precision"] is None  # no alarm in any resample
    assert result["recall"] == (0.0, 0.0)  # defined (positives exist), always 0
    assert result["false_alarms_per_1000"] == (0.0, 0.0)


def test_failure_identical_assets_collapse_to_the_point_value():
    # every asset: alarms at 0.9 (tp), 0.8 (fp), 0.6 (fp); 0.2 is a missed failure (fn)
    prob = np.tile([0.9, 0.8, 0.2, 0.6], 15)
    target = np.tile([1, 0, 1, 0], 15)
    assets = np.repeat(np.arange(15), 4)
    result = asset_bootstrap("failure", prob, target, assets, n_boot=200)
    expected = {"precision": 1 / 3, "recall": 1 / 2, "f1": 2 / 5, "false_alarms_per_1000": 500.0}
    for m, value in expected.items():
        assert result[m] == (pytest.approx(value, rel=1e-12), pytest.approx(value, rel=1e-12))
        assert result[m][0] == result[m][1]


def test_bias_coverage_asset_vs_window_bootstrap():
    rng = np.random.default_rng(2024)
    n_sets, n_assets, per_asset, n_boot = 300, 40, 25, 400
    assets = np.repeat(np.arange(n_assets), per_asset)
    target = np.zeros(n_assets * per_asset)
    covered_asset = covered_window = 0
    for i in range(n_sets):
        error = np.repeat(rng.normal(0, 3, n_assets), per_asset) + rng.normal(0, 1, len(target))
        low, high = asset_bootstrap("rul", error, target, assets, n_boot=n_boot, seed=i)["bias"]
        covered_asset += low <= 0 <= high
        # the naive alternative: resample windows as if they were independent
        idx = rng.integers(0, len(error), size=(n_boot, len(error)))
        w_low, w_high = np.quantile(error[idx].mean(axis=1), [0.025, 0.975])
        covered_window += w_low <= 0 <= w_high
    assert 0.88 <= covered_asset / n_sets <= 0.99
    assert covered_window / n_sets < 0.60


def test_single_asset_gives_none():
    pred, target = np.array([10.0, 12.0, 9.0]), np.array([11.0, 11.0, 11.0])
    assets = np.array([5, 5, 5])
    assert asset_bootstrap("rul", pred, target, assets) == dict.fromkeys(RUL_METRICS)
    result = asset_bootstrap("failure", np.array([0.9, 0.1, 0.7]), np.array([1, 0, 0]), assets)
    assert result == dict.fromkeys(FAILURE_METRICS)


def test_unknown_kind_and_bad_level():
    pred, target, assets = rul_data()
    with pytest.raises(ConfigError):
        asset_bootstrap("regression", pred, target, assets)
    with pytest.raises(ConfigError):
        bootstrap_by_group("auc", pred, target, assets, np.zeros(len(pred)))
    with pytest.raises(ConfigError):
        asset_bootstrap("rul", pred, target, assets, level=95)


def test_groups_match_bootstrap_on_each_subset():
    pred, target, assets = rul_data(n_assets=15, seed=5)
    rng = np.random.default_rng(5)
    groups = rng.integers(0, 3, len(pred))
    groups[assets == assets[0]] = 7  # one group holds a single asset
    kw = {"n_boot": 300, "seed": 11, "level": 0.9}
    by_group = bootstrap_by_group("rul", pred, target, assets, groups, **kw)
    assert sorted(by_group) == sorted(np.unique(groups).tolist())
    for g, result in by_group.items():
        m = groups == g
        assert result == asset_bootstrap("rul", pred[m], target[m], assets[m], **kw)
    assert by_group[7] == dict.fromkeys(RUL_METRICS)

    prob, y, fassets = failure_data(seed=4)
    fgroups = np.where(np.arange(len(prob)) % 2 == 0, "hot", "cold")
    fby = bootstrap_by_group("failure", prob, y, fassets, fgroups, threshold=0.4, n_boot=200)
    for g in ("hot", "cold"):
        m = fgroups == g
        expected = asset_bootstrap("failure", prob[m], y[m], fassets[m], threshold=0.4, n_boot=200)
        assert fby[g] == expected


def test_speed_200k_windows():
    rng = np.random.default_rng(0)
    n = 200_000
    assets = rng.integers(0, 500, n)
    target = rng.uniform(0, 150, n)
    pred = target + rng.normal(0, 10, n)
    start = time.perf_counter()
    result = asset_bootstrap("rul", pred, target, assets, n_boot=200)
    failure = asset_bootstrap("failure", rng.uniform(size=n), target < 15, assets, n_boot=200)
    assert time.perf_counter() - start < 5.0
    # 500 assets of 400 windows: narrow intervals around the whole-sample values
    error = pred - target
    for name, value in (("rmse", np.sqrt(np.mean(error**2))), ("bias", error.mean())):
        low, high = result[name]
        assert low < value < high and high - low < 0.5, name
    assert set(failure) == {"precision", "recall", "f1", "false_alarms_per_1000"}
    assert all(low < high for low, high in failure.values())
