"""Fault classification: the class task, multi-class metrics, outputs, builder and ONNX export."""

from __future__ import annotations

import functools
import json

import lightning as L
import numpy as np
import pandas as pd
import pytest
import torch

from plantml.evaluation.metrics import HEADLINE, evaluate, multiclass_metrics
from plantml.models import CNNModel
from plantml.tasks import ClassificationTask

CLASSES = ["inner", "normal", "outer"]


def test_multiclass_metrics_by_hand():
    target = torch.tensor([0, 0, 1, 1, 2, 2])
    codes = torch.tensor([0, 1, 1, 1, 2, 0])
    m = multiclass_metrics(codes, target, CLASSES)
    assert m["accuracy"] == pytest.approx(4 / 6)
    assert m["per_class_recall"] == {"inner": 0.5, "normal": 1.0, "outer": 0.5}
    assert m["balanced_accuracy"] == pytest.approx(2 / 3)
    # F1 per class: inner 2*1/(2+2)=0.5, normal 2*2/(2+3)=0.8, outer 2*1/(2+1)=2/3
    assert m["macro_f1"] == pytest.approx((0.5 + 0.8 + 2 / 3) / 3)
    assert m["confusion_matrix"] == [[1, 1, 0], [0, 2, 0], [1, 0, 1]]
    # probabilities (n, K) give the same as their argmax
    probs = torch.nn.functional.one_hot(codes, 3).float() * 0.8 + 0.2 / 3
    assert multiclass_metrics(probs, target, CLASSES)["accuracy"] == pytest.approx(4 / 6)


def test_evaluate_class_overall_and_by_condition():
    target = torch.tensor([0, 1, 2, 0, 1, 2], dtype=torch.float32)
    probs = torch.nn.functional.one_hot(torch.tensor([0, 1, 2, 0, 0, 0]), 3).float()
    conditions = torch.tensor([0, 0, 0, 1, 1, 1])
    out = evaluate(
        "class", probs, target, conditions, ["a", "b"], assets=torch.arange(6), n_boot=50,
        class_names=CLASSES,
    )  # fmt: skip
    assert HEADLINE["class"] == "accuracy"
    assert out["overall"]["accuracy"] == pytest.approx(4 / 6)
    assert out["by_condition"]["a"]["accuracy"] == 1.0
    assert out["by_condition"]["b"]["confusion_matrix"] == [[1, 0, 0], [1, 0, 0], [1, 0, 0]]
    assert out["worst_condition"]["condition"] == "b"
    assert "ci" not in out["overall"]  # no bootstrap for the class kind


def class_table(path, n_assets: int = 6, rows: int = 160) -> None:
    """3 classes (tone frequency), 2 load conditions (amplitude); one class per asset."""
    rng = np.random.default_rng(0)
    freq = {"normal": 0.05, "inner": 0.25, "outer": 0.45}
    frames = []
    for a in range(n_assets):
        label = CLASSES[a % 3]
        load = a // 3
        t = np.arange(rows)
        signal = (1 + load) * np.sin(2 * np.pi * freq[label] * t + rng.uniform(0, 6))
        frames.append(
            pd.DataFrame(
                {
                    "asset": f"m{a}",
                    "time": t,
                    "load": load,
                    "fault": label,
                    "vib": signal + 0.1 * rng.normal(size=rows),
                    "vib2": rng.normal(size=rows),
                }
            )
        )
    pd.concat(frames).to_csv(path, index=False)


def _compose(tmp_path):
    from plantml import api

    class_table(tmp_path / "bearings.csv")
    return api.compose(
        [
            "data=table",
            f"data.path={tmp_path / 'bearings.csv'}",
            "data.label_column=null",
            "data.condition_column=load",
            "data.conditions.column=load",
            "data.conditions.n_clusters=null",
            "data.batch_size=32",
            "data.window.length=16",
            "data.window.stride=4",
            "data.window.eval_stride=8",
            "data.split_by.method=temporal",
            "data.split_by.val_fraction=0.2",
            "data.split_by.test_fraction=0.2",
            "model=cnn",
            "model.channels=[8,8]",
            "task=classification",
            "task.optimizer.lr=0.01",
        ],
        output_dir=tmp_path / "run",
    )


def test_fit_test_and_outputs_on_a_tiny_table(tmp_path):
    from plantml.builders import build_datamodule, build_task, task_kind
    from plantml.evaluation.results import finish_evaluation

    cfg = _compose(tmp_path)
    assert task_kind(cfg) == "class" and cfg.task.monitor == "val/accuracy"
    torch.manual_seed(0)
    dm = build_datamodule(cfg)
    task = build_task(cfg, dm)
    assert isinstance(task, ClassificationTask)
    assert dm.data.class_names == CLASSES and task.class_names == CLASSES
    assert dm.state()["class_names"] == CLASSES
    assert task.model(torch.zeros(2, 16, len(dm.data.feature_names))).shape == (2, 3)
    trainer = L.Trainer(
        max_epochs=2,
        limit_train_batches=4,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(task, datamodule=dm)
    assert "val/accuracy" in trainer.callback_metrics
    task.test_prefix = "test"
    trainer.test(task, datamodule=dm, verbose=False)
    assert task.predictions["test"]["pred"].shape[1] == 3

    out = tmp_path / "eval"
    metrics, _ = finish_evaluation(out, task, dm, None, "test", "class", {})
    for split in ("val", "test"):
        for name in ("accuracy", "macro_f1", "balanced_accuracy"):
            assert 0.0 <= metrics[f"{split}/{name}"] <= 1.0
        assert np.array(metrics[f"{split}/confusion_matrix"]).shape == (3, 3)
        assert set(metrics[f"{split}/per_class_recall"]) == set(CLASSES)
        assert set(metrics["by_condition"][split]) == {"0", "1"}
        for cond in metrics["by_condition"][split].values():
            assert np.array(cond["confusion_matrix"]).shape == (3, 3)
            assert "accuracy" in cond
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["test/classes"] == CLASSES
    pred = pd.read_csv(out / "predictions_test.csv")
    assert {"target", "prediction", "probability", "condition"} <= set(pred.columns)
    assert {f"p_{c}" for c in CLASSES} <= set(pred.columns)
    assert set(pred["prediction"]) <= set(CLASSES) and set(pred["target"]) <= set(CLASSES)
    assert ((pred["probability"] > 0) & (pred["probability"] <= 1)).all()
    assert (out / "confusion_test.png").is_file()
    assert "macro F1" in (out / "report.md").read_text()


def test_builder_gives_one_output_per_class(tmp_path):
    from plantml.builders import build_datamodule, build_task

    cfg = _compose(tmp_path)
    task = build_task(cfg, build_datamodule(cfg))
    last = [m for m in task.model.modules() if isinstance(m, torch.nn.Linear)][-1]
    assert last.out_features == 3
    with torch.no_grad():
        assert task(torch.zeros(4, 16, 2)).shape == (4, 3)


def test_onnx_export_gives_class_probabilities(tmp_path):
    from plantml.export import onnx as ox

    torch.manual_seed(0)
    model = CNNModel(in_features=2, out_features=3, channels=(8, 8))
    task = ClassificationTask(model, functools.partial(torch.optim.AdamW, lr=1e-3))
    predictor = ox.predictor(task)
    ox.export_onnx(predictor, 32, 2, tmp_path / "model.onnx", exporter="torchscript")
    windows = np.random.default_rng(0).normal(size=(5, 32, 2)).astype(np.float32)
    onnx_probs = ox.run_onnx(ox.session(tmp_path / "model.onnx"), windows)
    torch_probs = ox.run_torch(predictor, windows)
    assert onnx_probs.shape == (5, 3)
    np.testing.assert_allclose(onnx_probs, torch_probs, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(onnx_probs.sum(1), 1.0, rtol=1e-5)
    with torch.no_grad():
        expected = task.postprocess(task(torch.from_numpy(windows))).numpy()
    np.testing.assert_allclose(torch_probs, expected, rtol=1e-6)


def test_bad_label_smoothing_names_the_fix():
    from plantml.errors import ConfigError

    with pytest.raises(ConfigError, match="label_smoothing"):
        ClassificationTask(CNNModel(2, 3), functools.partial(torch.optim.AdamW), label_smoothing=1)
