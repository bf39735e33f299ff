"""k-fold splits over assets and the truncated (official-test) protocol on held-out units."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from plantml.data.splits import SPLIT_CODES, split_rows
from plantml.errors import ConfigError, DataError
from plantml.evaluation.crossval import fold_overrides, summarize
from plantml.evaluation.truncated import truncated_result, truncation_draws
from tests.conftest import make_fleet


def _asset_codes(table, codes) -> dict:
    frame = table.frame.assign(code=codes)
    per_asset = frame.groupby(table.asset_column)["code"].unique()
    assert all(len(v) == 1 for v in per_asset)  # an asset never straddles two splits
    return {a: int(v[0]) for a, v in per_asset.items()}


@pytest.mark.parametrize("test_fraction", [0.0, 0.2])
def test_every_asset_validates_in_exactly_one_fold(test_fraction):
    table = make_fleet(n_assets=11)
    folds = [
        _asset_codes(
            table,
            split_rows(table, "asset", test_fraction=test_fraction, seed=3, folds=4, fold=f),
        )
        for f in range(4)
    ]
    assets = sorted(folds[0])
    val_counts = {a: sum(f[a] == SPLIT_CODES["val"] for f in folds) for a in assets}
    test = {a for a in assets if folds[0][a] == SPLIT_CODES["test"]}
    assert all(f[a] == SPLIT_CODES["test"] for f in folds for a in test)  # test fixed
    assert len(test) == (2 if test_fraction else 0)
    assert all(val_counts[a] == (0 if a in test else 1) for a in assets)
    sizes = sorted(sum(v == SPLIT_CODES["val"] for v in f.values()) for f in folds)
    assert sizes[-1] - sizes[0] <= 1  # near-equal folds
    again = _asset_codes(
        table, split_rows(table, "asset", test_fraction=test_fraction, seed=3, folds=4, fold=2)
    )
    assert again == folds[2]  # seeded


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"folds": 1, "fold": 0}, "folds must be a whole number >= 2"),
        ({"folds": 3, "fold": 3}, "fold must be in 0 .. 2"),
        ({"folds": 3}, "needs both"),
        ({"folds": 3, "fold": 0, "method": "temporal"}, "need method=asset"),
    ],
)
def test_bad_fold_settings_name_the_fix(kwargs, message):
    table = make_fleet(n_assets=6)
    method = kwargs.pop("method", "asset")
    with pytest.raises(ConfigError, match=message):
        split_rows(table, method, **kwargs)


def test_too_many_folds_for_the_assets():
    with pytest.raises(DataError, match="too few for 6 folds"):
        split_rows(make_fleet(n_assets=6), "asset", test_fraction=0.0, folds=6, fold=0)


def test_plantml_cv_refuses_its_own_keys():
    assert fold_overrides(["a=1"], 3, 1)[-2:] == ["data.split_by.folds=3", "data.split_by.fold=1"]
    with pytest.raises(ConfigError, match=r"sets data\.split_by\.folds and fold itself"):
        fold_overrides(["data.split_by.fold=2"], 3, 1)


def test_truncation_draws_cut_every_unit_once_per_draw_seeded():
    rng = np.random.default_rng(0)
    assets = np.repeat([4, 1, 7], [50, 80, 30])[rng.permutation(160)]
    draws = truncation_draws(assets, cuts=200, seed=5)
    assert draws.shape == (200, 3)
    assert (np.sort(assets[draws], axis=1) == [1, 4, 7]).all()  # one window per unit and draw
    np.testing.assert_array_equal(draws, truncation_draws(assets, 200, seed=5))
    assert not np.array_equal(draws, truncation_draws(assets, 200, seed=6))
    # uniform over a unit's windows: every window of the 30-window unit gets picked
    column = list(np.unique(assets)).index(7)
    assert len(np.unique(draws[:, column])) > 25
    with pytest.raises(ConfigError, match=r"truncated\.cuts"):
        truncation_draws(assets, 0)


def test_truncated_result_scores_one_window_per_unit():
    n = 60
    assets = torch.arange(n) // 20  # 3 units of 20 windows
    y = torch.linspace(125, 0, n)
    out = {
        "pred": y + torch.where(assets == 1, 10.0, 0.0),  # unit 1 always 10 late, others exact
        "y": y,
        "condition": torch.zeros(n, dtype=torch.long),
        "asset": assets,
    }
    result = truncated_result(out, ["all"], cuts=8, seed=0, n_boot=50)
    overall = result["overall"]
    assert overall["n"] == 24 and overall["assets"] == 3 and overall["cuts"] == 8
    assert overall["rmse"] == pytest.approx(np.sqrt(100 / 3), rel=1e-5)
    assert overall["rmse_draw_mean"] == pytest.approx(np.sqrt(100 / 3), rel=1e-5)
    assert overall["rmse_draw_std"] == pytest.approx(0.0, abs=1e-6)
    phm_one_draw = np.exp(10 / 10) - 1  # one late unit per draw
    assert overall["score_per_draw"] == pytest.approx(phm_one_draw, rel=1e-5)
    assert overall["ci_method"] == "asset" and overall["ci"]["rmse"][0] <= overall["rmse"]


def test_cv_summary_means_spread_and_pooled(tmp_path):
    import pandas as pd

    folds = []
    for i, rmse in enumerate([10.0, 14.0]):
        run = tmp_path / f"fold{i}"
        run.mkdir()
        pred = pd.DataFrame(
            {
                "asset": [f"u{i}a"] * 3 + [f"u{i}b"] * 3,
                "target": [3.0] * 6,
                "prediction": [3.0 + (i + 1)] * 6,
                "condition": "all",
            }
        )
        pred.to_csv(run / "predictions_val.csv", index=False)
        folds.append(
            {
                "val/rmse": rmse,
                "val/assets": 2,
                "epochs": 5,
                "by_condition": {"val": {"all": {"rmse": rmse}}},
            }
        )
    result = summarize(tmp_path, folds, {"cuts": 4, "seed": 0})
    assert result["summary"]["val/rmse"]["mean"] == 12.0
    assert result["summary"]["val/rmse"]["std"] == pytest.approx(np.std([10, 14], ddof=1))
    assert result["pooled"]["val"]["rmse"] == pytest.approx(np.sqrt((1 + 4) / 2))
    assert result["pooled"]["val_truncated"]["units"] == 4
    assert "12.000 ± 2.828" in (tmp_path / "cv.md").read_text()
