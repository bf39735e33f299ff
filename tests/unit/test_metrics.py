"""Metrics against hand-computed examples."""

from __future__ import annotations

import math

import pytest
import torch

from plantml.evaluation.metrics import (
    best_f1_threshold,
    classification_metrics,
    evaluate,
    phm08_score,
    regression_metrics,
)


def test_regression_by_hand():
    pred = torch.tensor([10.0, 20.0, 35.0])
    true = torch.tensor([12.0, 20.0, 30.0])
    m = regression_metrics(pred, true)
    assert m["rmse"] == pytest.approx(math.sqrt((4 + 0 + 25) / 3))
    assert m["mae"] == pytest.approx(7 / 3)
    assert m["bias"] == pytest.approx(1.0)
    # early by 2: exp(2/13) - 1; exact: 0; late by 5: exp(5/10) - 1
    assert m["score"] == pytest.approx(math.exp(2 / 13) - 1 + math.exp(0.5) - 1)
    assert phm08_score(torch.tensor([0.0]), torch.tensor([10.0])) < phm08_score(
        torch.tensor([20.0]), torch.tensor([10.0])
    )


def test_classification_by_hand():
    prob = torch.tensor([0.9, 0.8, 0.4, 0.3, 0.6, 0.1])
    y = torch.tensor([1, 1, 1, 0, 0, 0])
    m = classification_metrics(prob, y, threshold=0.6)  # alarms: 0.9, 0.8, 0.6 (>= threshold)
    assert (m["tp"], m["fp"], m["fn"], m["tn"]) == (2, 1, 1, 2)
    assert m["precision"] == pytest.approx(2 / 3) and m["recall"] == pytest.approx(2 / 3)
    assert m["f1"] == pytest.approx(2 / 3)
    assert m["false_alarms_per_1000"] == pytest.approx(1000 / 6)
    assert m["auroc"] == pytest.approx(8 / 9)  # 8 of 9 (positive, negative) pairs ranked right


def test_best_threshold_is_applied_with_the_same_rule():
    prob = torch.tensor([0.9, 0.7, 0.7, 0.2, 0.1])
    y = torch.tensor([1, 1, 0, 0, 0])
    t = best_f1_threshold(prob, y)
    m = classification_metrics(prob, y, t)
    assert t == pytest.approx(0.7) and m["tp"] + m["fp"] == int((prob >= t).sum())


def test_undefined_metrics_are_none_not_nan():
    m = classification_metrics(torch.tensor([0.2, 0.9]), torch.tensor([0, 0]), 0.5)
    assert m["auroc"] is None and m["recall"] is None and m["precision"] == 0.0


def test_per_condition_split_and_counts():
    pred = torch.tensor([1.0, 2.0, 3.0, 4.0])
    y = torch.tensor([1.0, 2.0, 5.0, 4.0])
    out = evaluate("rul", pred, y, torch.tensor([0, 0, 1, -1]), ["a", "b"])
    assert out["by_condition"]["a"]["rmse"] == 0.0 and out["by_condition"]["b"]["rmse"] == 2.0
    assert out["by_condition"]["unseen"]["n"] == 1 and out["overall"]["n"] == 4


def test_single_asset_condition_has_no_interval_and_worst_is_named():
    import numpy as np

    rng = np.random.default_rng(0)
    assets = torch.tensor(np.repeat(np.arange(6), 20))
    conditions = torch.tensor(np.where(assets.numpy() == 5, 1, 0))  # condition 'b' is one asset
    true = torch.tensor(rng.uniform(0, 100, 120)).float()
    pred = true + torch.tensor(np.where(conditions.numpy() == 1, 20.0, 1.0)).float()
    out = evaluate(
        "rul", pred, true, conditions, ["a", "b"], assets=assets, n_boot=200, boot_method="asset"
    )
    assert (
        out["by_condition"]["b"]["assets"] == 1 and out["by_condition"]["b"]["ci"]["rmse"] is None
    )
    lo, hi = out["by_condition"]["a"]["ci"]["rmse"]
    assert lo <= out["by_condition"]["a"]["rmse"] <= hi
    worst = out["worst_condition"]
    assert worst["condition"] == "b" and worst["gap"] == pytest.approx(
        20.0 - out["overall"]["rmse"]
    )


def test_coverage_flags_unseen_and_rare_conditions():
    from plantml.evaluation.metrics import coverage

    train = [0] * 98 + [1] * 2
    cov = coverage(train, [0, 1, 2], ["a", "b", "c"])
    assert "warning" not in cov["a"]
    assert cov["b"]["train_windows"] == 2 and "only 2 training windows" in cov["b"]["warning"]
    assert cov["c"]["train_windows"] == 0 and "never saw it" in cov["c"]["warning"]


def test_one_asset_gets_block_bootstrap_intervals_and_says_so():
    import numpy as np

    rng = np.random.default_rng(1)
    true = torch.tensor(rng.uniform(0, 100, 400)).float()
    pred = true + torch.tensor(rng.normal(0, 5, 400)).float()
    one = torch.zeros(400, dtype=torch.long)
    out = evaluate("rul", pred, true, one, ["all"], assets=one, n_boot=300)
    overall = out["overall"]
    assert overall["ci_method"] == "block"
    lo, hi = overall["ci"]["rmse"]
    assert lo < overall["rmse"] < hi and hi - lo < 2.0
    assets = torch.tensor(np.repeat([0, 1], 200))
    assert (
        evaluate("rul", pred, true, one, ["all"], assets=assets, n_boot=50)["overall"]["ci_method"]
        == "asset"
    )


def test_a_condition_without_positives_is_not_assessable_nor_worst():
    import numpy as np

    target = torch.tensor(np.r_[np.zeros(50), np.ones(10), np.zeros(60)]).long()
    prob = torch.tensor(np.r_[np.full(50, 0.1), np.full(10, 0.9), np.full(60, 0.1)]).float()
    prob[70] = 0.95  # one false alarm in condition b, which has no failures
    conditions = torch.tensor(np.r_[np.zeros(60), np.ones(60)]).long()
    out = evaluate("failure", prob, target, conditions, ["a", "b"], threshold=0.5)
    b = out["by_condition"]["b"]
    assert b["f1"] is None and b["recall"] is None and b["fp"] == 1
    assert b["false_alarms_per_1000"] == pytest.approx(1000 / 60)
    assert out["worst_condition"] is None  # one assessable condition: nothing to rank
