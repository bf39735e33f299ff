"""Classical models (trees on window statistics): fit, checkpoint, ONNX graph parity, errors."""

from __future__ import annotations

from functools import partial

import numpy as np
import pytest
import torch

from plantml.errors import ConfigError
from plantml.export import onnx as ox
from plantml.export.classical import float32_floor
from plantml.models.classical import GradientBoostingModel, IsolationForestModel
from plantml.tasks.classical import (
    ClassicalAnomalyTask,
    ClassicalFailureTask,
    ClassicalRULTask,
    classical_task_class,
)
from plantml.tasks.physics import PhysicsRULTask

OPT = partial(torch.optim.AdamW, lr=1e-3)


def _windows(n=600, length=10, channels=3, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(0, 1, (n, length, channels)).astype(np.float32)
    health = x[:, -1, 0] + 2.0 * x[:, :, 1].std(1)
    return x, health


def _fit(task, x, y):
    feats = task.model.window_features(torch.from_numpy(x))
    half = len(x) // 2
    enc = task.encode_target(torch.from_numpy(y)).numpy()
    task.model.fit(feats[:half], enc[:half], task.kind, (feats[half:], enc[half:]))
    return task


def _parity(task, x, tmp_path):
    predictor = ox.predictor(task)
    path = tmp_path / "model.onnx"
    info = ox.export_onnx(predictor, x.shape[1], x.shape[2], path)
    assert info["exporter"] == "trees" and info["trees"] > 0
    ref = ox.run_torch(predictor, x)
    got = ox.run_onnx(ox.session(path), x)
    assert got.shape == (len(x),)
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5)
    return ref


def test_gbm_rul_learns_and_its_graph_matches_scikit_learn(tmp_path):
    x, health = _windows()
    rul = np.clip(100 - 40 * health, 0, 125)
    model = GradientBoostingModel(3, stats=["mean", "std", "last"], max_iter=60)
    task = _fit(ClassicalRULTask(model, OPT, target_scale=125.0), x, rul)
    pred = _parity(task, x, tmp_path)
    assert pred.min() >= 0  # clipped at 0 in torch and in the graph
    assert np.sqrt(np.mean((pred - rul) ** 2)) < 0.5 * rul.std()
    assert model.parameter_count() > 60


def test_gbm_failure_probabilities_and_iforest_scores_match_their_graphs(tmp_path):
    x, health = _windows(seed=1)
    failing = (health > np.quantile(health, 0.8)).astype(float)
    fail = _fit(ClassicalFailureTask(GradientBoostingModel(3, max_iter=40), OPT), x, failing)
    prob = _parity(fail, x, tmp_path)
    assert prob.min() >= 0 and prob.max() <= 1
    assert prob[failing == 1].mean() > prob[failing == 0].mean() + 0.3
    normal = np.zeros(len(x))
    forest = IsolationForestModel(3, n_estimators=30)
    anomaly = _fit(ClassicalAnomalyTask(forest, OPT), x, normal)
    scores = _parity(anomaly, x, tmp_path)
    sk = -forest.estimator.decision_function(forest.window_features(torch.from_numpy(x)))
    np.testing.assert_allclose(scores, sk, rtol=1e-5, atol=1e-6)
    far = x.copy()
    far[:, :, 0] += 8.0  # far outside the normal windows: higher scores
    assert ox.run_torch(ox.predictor(anomaly), far).mean() > scores.mean()


def test_the_estimator_travels_in_the_state_dict():
    x, health = _windows(n=200)
    task = _fit(
        ClassicalRULTask(GradientBoostingModel(3, max_iter=20), OPT, target_scale=1.0), x, health
    )
    fresh = ClassicalRULTask(GradientBoostingModel(3, max_iter=20), OPT, target_scale=1.0)
    with pytest.raises(ConfigError, match="not fitted"):
        fresh(torch.from_numpy(x[:2]))
    missing, unexpected = fresh.load_state_dict(task.state_dict(), strict=False)
    assert not missing and not unexpected
    torch.testing.assert_close(fresh(torch.from_numpy(x)), task(torch.from_numpy(x)))


def test_thresholds_round_down_to_float32():
    t = np.array([0.1, 1.0, -0.3, 1e-8, 2.5])
    f = float32_floor(t)
    assert f.dtype == np.float32
    assert np.all(f.astype(np.float64) <= t)
    assert np.all(np.nextafter(f, np.float32(np.inf)).astype(np.float64) > t)


def test_wrong_pairings_name_the_fix():
    with pytest.raises(ConfigError, match="use model=iforest"):
        ClassicalAnomalyTask(GradientBoostingModel(3), OPT)
    with pytest.raises(ConfigError, match="use model=gbm"):
        ClassicalRULTask(IsolationForestModel(3), OPT)
    with pytest.raises(ConfigError, match="class task"):
        GradientBoostingModel(3, out_features=4)
    with pytest.raises(ConfigError, match="not PhysicsRULTask"):
        classical_task_class(PhysicsRULTask)
    with pytest.raises(ConfigError, match="class_weight"):
        GradientBoostingModel(3, class_weight="inverse")
    model = GradientBoostingModel(3, max_iter=5)
    with pytest.raises(ConfigError, match="one class only"):
        model.fit(np.zeros((20, 9)), np.zeros(20), "failure")
