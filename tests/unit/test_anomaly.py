"""Anomaly detection: autoencoders, the anomaly task, threshold calibration, metrics, wiring."""

from __future__ import annotations

import functools
import json
import math

import lightning as L
import numpy as np
import pandas as pd
import pytest
import torch

from plantml.errors import ConfigError, DataError
from plantml.evaluation.anomaly import anomaly_metrics, pot_threshold, quantile_threshold
from plantml.evaluation.metrics import HEADLINE, HIGHER_IS_WORSE, evaluate
from plantml.models import ConvAutoencoder, LSTMAutoencoder
from plantml.tasks import AnomalyTask

MODELS = {
    "lstm_ae": lambda c: LSTMAutoencoder(c, hidden_size=16, latent_size=8),
    "conv_ae": lambda c: ConvAutoencoder(c, channels=(8, 4), kernel_size=5),
}


def make_task(model, **kw) -> AnomalyTask:
    return AnomalyTask(model, functools.partial(torch.optim.AdamW, lr=1e-3), **kw)


# -- models --------------------------------------------------------------------------------
@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("time", [16, 29])
def test_autoencoder_reconstructs_the_window_shape_and_trains(name, time):
    torch.manual_seed(0)
    model = MODELS[name](3)
    x = torch.randn(4, time, 3)
    recon = model(x)
    assert recon.shape == x.shape
    ((recon - x) ** 2).mean().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


def test_autoencoders_accept_the_builder_arguments_and_reject_bad_ones():
    assert ConvAutoencoder(in_features=5, out_features=1)(torch.randn(2, 30, 5)).shape == (2, 30, 5)
    assert LSTMAutoencoder(in_features=5, out_features=1)(torch.randn(2, 30, 5)).shape == (2, 30, 5)
    with pytest.raises(ConfigError, match=r"model\.channels"):
        ConvAutoencoder(3, channels=(8, 0))
    with pytest.raises(ConfigError, match="latent_size"):
        LSTMAutoencoder(3, latent_size=0)


@pytest.mark.parametrize("name", MODELS)
def test_onnx_export_is_one_scoring_graph_matching_torch(name, tmp_path):
    from plantml.export import onnx as ox

    torch.manual_seed(0)
    task = make_task(MODELS[name](3))
    model = ox.predictor(task)
    info = ox.export_onnx(model, 24, 3, tmp_path / "model.onnx", exporter="torchscript")
    assert info["exporter"] == "torchscript"
    windows = np.random.default_rng(0).normal(size=(7, 24, 3)).astype(np.float32)
    onnx_scores = ox.run_onnx(ox.session(tmp_path / "model.onnx"), windows)
    torch_scores = ox.run_torch(model, windows)
    assert onnx_scores.shape == (7,)
    np.testing.assert_allclose(onnx_scores, torch_scores, rtol=1e-4, atol=1e-6)
    with torch.no_grad():  # the exported score is the task's own score
        np.testing.assert_allclose(torch_scores, task(torch.from_numpy(windows)).numpy(), rtol=1e-6)


# -- the task ------------------------------------------------------------------------------
def test_loss_ignores_anomalous_windows():
    task = make_task(MODELS["conv_ae"](3))
    scores = torch.tensor([1.0, 2.0, 100.0, 3.0], requires_grad=True)
    y = torch.tensor([0.0, 0.0, 1.0, 0.0])
    assert float(task.loss(scores, y).detach()) == pytest.approx(2.0)
    assert float(task.loss(scores.detach() * torch.tensor([1, 1, 50, 1]), y)) == pytest.approx(2.0)
    only_anomalies = task.loss(scores, torch.ones(4))
    only_anomalies.backward()
    assert float(only_anomalies.detach()) == 0.0
    torch.testing.assert_close(scores.grad, torch.zeros(4))  # a zero gradient, not none


def test_scores_per_window_and_per_step():
    torch.manual_seed(0)
    task = make_task(MODELS["lstm_ae"](3), score="mae")
    x = torch.randn(5, 12, 3)
    steps = task.step_scores(x)
    assert steps.shape == (5, 12) and task(x).shape == (5,)
    torch.testing.assert_close(steps.mean(-1), task(x))
    assert task.postprocess(task(x)).shape == (5,)


def test_bad_task_options_name_the_fix():
    model = MODELS["conv_ae"](3)
    with pytest.raises(ConfigError, match="quantile, pot or a number"):
        make_task(model, threshold="best")
    with pytest.raises(ConfigError, match=r"task\.score"):
        make_task(model, score="rmse")
    with pytest.raises(ConfigError, match="pot_risk"):
        make_task(model, pot_level=0.99, pot_risk=0.05)
    with pytest.raises(ConfigError, match="distillation"):
        make_task(model).set_teacher(MODELS["conv_ae"](3))
    assert make_task(model, threshold=0.7).threshold_value() == pytest.approx(0.7)


# -- calibration ---------------------------------------------------------------------------
def test_quantile_threshold_on_exponential_scores():
    scores = np.random.default_rng(0).exponential(size=200_000)
    assert quantile_threshold(scores, 0.99) == pytest.approx(math.log(100), rel=0.02)
    with pytest.raises(ConfigError, match="quantile"):
        quantile_threshold(scores, 1.0)
    with pytest.raises(DataError, match="normal"):
        quantile_threshold(np.array([np.nan]), 0.99)


def test_pot_threshold_extrapolates_an_exponential_tail():
    # 20,000 normal scores hold ~20 points above the 0.999 quantile: POT fits the tail
    # above the 0.98 quantile (~400 excesses) and extrapolates
    for seed in range(3):
        scores = np.random.default_rng(seed).exponential(size=20_000)
        assert pot_threshold(scores, level=0.98, risk=1e-3) == pytest.approx(
            math.log(1000), rel=0.1
        )


def test_pot_threshold_follows_a_heavy_tail_and_checks_its_inputs():
    # Pareto (shape 0.5) scores: P(S > z) = (1 + 0.5 z)^-2, so z(1e-3) = 2 (1000^0.5 - 1) = 61.2;
    # an exponential tail would put it far lower
    u = np.random.default_rng(1).uniform(size=50_000)
    scores = 2 * (u ** (-0.5) - 1)
    assert pot_threshold(scores, level=0.98, risk=1e-3) == pytest.approx(61.2, rel=0.15)
    with pytest.raises(ConfigError, match="pot_risk"):
        pot_threshold(scores, level=0.98, risk=0.05)
    with pytest.raises(DataError, match="pot_level"):
        pot_threshold(np.arange(10.0), level=0.98, risk=1e-3)


# -- metrics -------------------------------------------------------------------------------
def test_anomaly_metrics_on_hand_made_events():
    # asset 0: event of 4 windows alarmed first at its 3rd window, one false alarm before it
    # asset 1: event of 2 windows never alarmed
    labels = np.array([0, 0, 1, 1, 1, 1, 0, 0, *[0, 1, 1, 0]])
    alarms = np.array([1, 0, 0, 0, 1, 1, 0, 0, *[0, 0, 0, 0]])
    assets = np.array([0] * 8 + [1] * 4)
    ends = np.array([*range(10, 18), *range(10, 14)])
    scores = np.where(alarms == 1, 2.0, 0.5) + 0.01 * labels
    order = np.random.default_rng(0).permutation(len(labels))  # ends restore time order
    m = anomaly_metrics(scores[order], labels[order], 1.0, assets[order], ends[order])
    tp, fp, fn, tn = 2, 1, 4, 5
    assert (m["tp"], m["fp"], m["fn"], m["tn"]) == (tp, fp, fn, tn)
    assert m["precision"] == pytest.approx(2 / 3)
    assert m["recall"] == pytest.approx(2 / 6)
    assert m["f1"] == pytest.approx(2 * tp / (2 * tp + fp + fn))
    assert m["false_alarm_rate"] == pytest.approx(1 / 6)
    assert m["missed_alarm_rate"] == pytest.approx(4 / 6)
    assert m["events"] == 2 and m["detected_events"] == 1
    assert m["detected_share"] == pytest.approx(0.5)
    assert m["detection_delay"] == pytest.approx(2.0)  # two windows before the alarm
    assert 0.5 < m["auroc"] <= 1.0
    # two assets side by side in the given order are two events, not one
    joined = anomaly_metrics([0, 0, 0], [1, 1, 1], 1.0, assets=[0, 1, 1])
    assert joined["events"] == 2 and joined["detection_delay"] is None
    assert joined["auroc"] is None and joined["false_alarm_rate"] is None


def test_evaluate_reports_anomaly_metrics_overall_and_by_condition():
    rng = np.random.default_rng(0)
    labels = torch.tensor((rng.uniform(size=200) < 0.1).astype(np.float32))
    scores = torch.tensor(rng.normal(size=200), dtype=torch.float32) + 3 * labels
    conditions = torch.tensor(rng.integers(0, 2, 200))
    assets = torch.tensor(np.repeat(np.arange(10), 20))
    ends = torch.tensor(np.tile(np.arange(20), 10))
    result = evaluate(
        "anomaly", scores, labels, conditions, ["low", "high"], 1.5, assets, n_boot=50, ends=ends
    )
    overall = result["overall"]
    for key in ("f1", "false_alarm_rate", "missed_alarm_rate", "detection_delay", "auroc"):
        assert key in overall
    assert overall["auroc"] > 0.9 and set(result["by_condition"]) == {"low", "high"}
    assert "f1" in overall["ci"]
    assert (
        HEADLINE["anomaly"] == "f1" and {"false_alarm_rate", "detection_delay"} <= HIGHER_IS_WORSE
    )


# -- one fitting run, through the real configs -----------------------------------------------
def spiky_table(path, n_assets: int = 10, rows: int = 160, seed: int = 0):
    """Periodic sensors with injected spikes; the anomaly column marks the spike rows."""
    rng = np.random.default_rng(seed)
    frames = []
    for a in range(n_assets):
        t = np.arange(rows)
        label = np.zeros(rows, np.int8)
        for start in rng.choice(np.arange(30, rows - 12, 25), size=2, replace=False):
            label[start : start + 8] = 1
        data = {"pump": f"p{a}", "time": t, "anomaly": label}
        for s in range(3):
            clean = np.sin(t / 4 + s + a) + rng.normal(0, 0.05, rows)
            data[f"s{s}"] = clean + 4.0 * label * (1 if s != 1 else -1)
        frames.append(pd.DataFrame(data))
    pd.concat(frames).to_csv(path, index=False)


def test_fit_calibrates_the_threshold_and_scores_anomalies_higher(tmp_path):
    from plantml import api
    from plantml.builders import build_datamodule, build_task, task_kind
    from plantml.evaluation.results import finish_evaluation

    spiky_table(tmp_path / "bench.csv")
    cfg = api.compose(
        [
            "data=table",
            f"data.path={tmp_path / 'bench.csv'}",
            "data.asset_column=pump",
            "data.label_column=anomaly",
            "data.label_kind=anomaly",
            "data.batch_size=64",
            "data.window.length=16",
            "data.window.stride=1",
            "data.split_by.val_fraction=0.3",
            "model=conv_ae",
            "task=anomaly",
            "task.optimizer.lr=0.01",
        ],
        output_dir=tmp_path / "run",
    )
    assert task_kind(cfg) == "anomaly" and cfg.task.monitor == "val/loss"
    torch.manual_seed(0)
    dm = build_datamodule(cfg)
    task = build_task(cfg, dm)
    assert isinstance(task, AnomalyTask) and isinstance(task.model, ConvAutoencoder)
    trainer = L.Trainer(
        max_epochs=2,
        limit_train_batches=3,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(task, datamodule=dm)
    threshold = task.threshold_value()
    assert math.isfinite(threshold) and threshold > 0
    val = task.predictions["val"]
    anomalous, normal = val["pred"][val["y"] > 0.5], val["pred"][val["y"] < 0.5]
    assert len(anomalous) and len(normal)
    assert float(anomalous.mean()) > 2 * float(normal.mean())
    assert threshold == pytest.approx(float(torch.quantile(normal.double(), 0.99)), rel=1e-6)
    assert "val/loss" in trainer.callback_metrics

    # the threshold travels with the checkpoint
    fresh = build_task(cfg, dm)
    fresh.load_state_dict(task.state_dict())
    assert fresh.threshold_value() == pytest.approx(threshold)

    # evaluation outputs: metrics.json, predictions with alarms, score plot, report
    trainer.test(task, datamodule=dm, verbose=False)
    out = tmp_path / "eval"
    metrics, _ = finish_evaluation(out, task, dm, None, "val", "anomaly", {})
    assert "val/false_alarm_rate" in metrics
    assert json.loads((out / "metrics.json").read_text())["val/threshold"] == pytest.approx(
        threshold
    )
    pred = pd.read_csv(out / "predictions_val.csv")
    assert {"prediction", "alarm", "threshold", "target"} <= set(pred.columns)
    assert (pred["alarm"] == (pred["prediction"] >= threshold)).all()
    # the reported F1 is the F1 of those alarms
    alarm, anomaly = pred["alarm"].astype(bool), pred["target"] > 0.5
    tp = int((alarm & anomaly).sum())
    f1 = 2 * tp / (alarm.sum() + anomaly.sum())
    assert metrics["val/f1"] == pytest.approx(f1)
    assert (out / "anomaly_scores_val.png").is_file()
    assert "false-alarm rate" in (out / "report.md").read_text()
