import numpy as np
import pytest

from plantml.data.conditions import OperatingConditions
from plantml.data.scaling import Scaler
from plantml.data.splits import SPLIT_CODES, split_rows
from plantml.errors import ConfigError, DataError
from tests.conftest import make_fleet


def test_asset_split_is_leak_free_and_seeded():
    table = make_fleet(n_assets=20)
    codes = split_rows(table, "asset", 0.2, 0.2, seed=3)
    assets = table.frame["unit"].to_numpy()
    per_split = {c: set(assets[codes == c]) for c in SPLIT_CODES.values()}
    assert (
        not per_split[0] & per_split[1]
        and not per_split[0] & per_split[2]
        and not per_split[1] & per_split[2]
    )
    assert len(per_split[1]) == 4 and len(per_split[2]) == 4 and len(per_split[0]) == 12
    np.testing.assert_array_equal(codes, split_rows(table, "asset", 0.2, 0.2, seed=3))
    assert not np.array_equal(codes, split_rows(table, "asset", 0.2, 0.2, seed=4))


def test_temporal_split_keeps_time_order():
    table = make_fleet(n_assets=5)
    codes = split_rows(table, "temporal", 0.2, 0.1)
    t = table.frame["cycle"].to_numpy()
    assert t[codes == 0].max() <= t[codes == 1].min()
    assert t[codes == 1].max() <= t[codes == 2].min()


def test_split_errors():
    table = make_fleet(n_assets=2)
    with pytest.raises(DataError, match="too few"):
        split_rows(table, "asset", 0.3, 0.3)
    with pytest.raises(ConfigError, match="nothing to train"):
        split_rows(table, "asset", 0.6, 0.5)
    with pytest.raises(ConfigError, match="method"):
        split_rows(table, "random")


def test_scaler_fitted_on_train_rows_only():
    rng = np.random.default_rng(0)
    x = rng.normal(5, 2, size=(1000, 3))
    train = np.arange(1000) < 600
    x[~train] += 100  # validation drifted: must not leak into the statistics
    cond = np.zeros(1000, np.int64)
    scaler = Scaler("standard").fit(x[train], cond[train], 1)
    np.testing.assert_allclose(scaler.offset[-1], x[train].mean(0))
    z = scaler.transform(x, cond)
    assert abs(z[train].mean()) < 1e-6 and z[~train].mean() > 40


def test_scaler_per_condition_and_unseen_condition():
    x = np.r_[np.full((50, 1), 10.0), np.full((50, 1), 20.0)] + np.linspace(0, 1, 100)[:, None]
    cond = np.r_[np.zeros(50, int), np.ones(50, int)]
    scaler = Scaler("standard", per_condition=True).fit(x, cond, 3)  # condition 2 has no rows
    z = scaler.transform(x, cond)
    assert abs(z[:50].mean()) < 1e-6 and abs(z[50:].mean()) < 1e-6
    # an unseen condition (2 or -1) falls back to global statistics
    z_unseen = scaler.transform(x[:5], np.full(5, 2))
    np.testing.assert_allclose(z_unseen, (x[:5] - x.mean()) / x.std(), rtol=1e-5)


def test_scaler_constant_feature_and_skipped_mask():
    x = np.c_[np.ones(10), np.r_[np.zeros(5), np.ones(5)]]
    scaler = Scaler("standard", skip=[1]).fit(x, np.zeros(10, int), 1)
    z = scaler.transform(x, np.zeros(10, int))
    assert np.isfinite(z).all()
    np.testing.assert_array_equal(z[:, 1], x[:, 1])


def test_condition_clustering_finds_cmapss_like_regimes():
    rng = np.random.default_rng(1)
    centers = np.array(
        [
            [42, 0.84, 100],
            [35, 0.84, 100],
            [25, 0.62, 60],
            [20, 0.70, 100],
            [10, 0.25, 100],
            [0, 0, 100],
        ],
        float,
    )
    truth = rng.integers(0, 6, 3000)
    points = centers[truth] + rng.normal(0, [0.003, 0.0003, 0.0], (3000, 3))
    import pandas as pd

    from plantml.data.table import SensorTable

    frame = pd.DataFrame(points, columns=["op1", "op2", "op3"]).assign(
        unit=np.repeat(np.arange(30), 100),
        cycle=np.tile(np.arange(100), 30),
        s=rng.normal(size=3000),
    )
    table = SensorTable(frame, "unit", "cycle", ["s"], setting_columns=["op1", "op2", "op3"])
    train = frame["unit"].to_numpy() < 20
    cond = OperatingConditions(n_clusters=6, seed=0).fit(table, train)
    codes = cond.assign(table)
    # each true regime maps to exactly one cluster, on train and held-out rows alike
    pairs = set(zip(truth.tolist(), codes.tolist(), strict=True))
    assert len(pairs) == 6 and len({c for _, c in pairs}) == 6
    assert "op1=42" in cond.names[-1]


def test_condition_from_column_and_unknown_value():
    table = make_fleet(n_assets=3)
    table.frame["load"] = np.where(table.frame["cycle"] % 2 == 0, "high", "low")
    cond = OperatingConditions(column="load").fit(table)
    assert cond.names == ["high", "low"]
    table.frame.loc[0, "load"] = "overload"
    assert cond.assign(table)[0] == -1
    with pytest.raises(ConfigError, match="not found"):
        OperatingConditions(column="nope").fit(table)
