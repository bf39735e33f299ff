"""Export steps on tiny models: ONNX export + parity, pruning, quantization, distillation."""

from __future__ import annotations

import copy
import functools

import numpy as np
import onnx
import pytest
import torch
from torch import nn

from plantml.errors import ConfigError
from plantml.export import onnx as ox
from plantml.export.onnx import ExportError, Predictor
from plantml.export.prune import (
    count_parameters,
    magnitude_prune,
    make_permanent,
    prune_model,
    structured_prune,
)
from plantml.export.quantize import op_counts, quantize
from plantml.export.verify import parity, require_parity
from plantml.models import LSTMModel
from plantml.tasks import FailureTask, RULTask

T, C = 12, 4


def _windows(n: int = 64, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, T, C)).astype(np.float32)


class TinyCNN(nn.Module):
    """A (batch, time, channels) convolutional model, for static quantization."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Sequential(nn.Conv1d(C, 8, 3, padding=1), nn.ReLU(), nn.Conv1d(8, 8, 3))
        self.head = nn.Linear(8, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.conv(x.transpose(1, 2)).mean(-1))


def _export(model: nn.Module, tmp_path, exporter: str = "auto", post=torch.sigmoid):
    torch.manual_seed(0)
    predictor = Predictor(model.eval(), post).eval()
    info = ox.export_onnx(predictor, T, C, tmp_path / "m.onnx", exporter)
    return predictor, info, tmp_path / "m.onnx"


@pytest.mark.parametrize(
    "model",
    [
        LSTMModel(C, hidden_size=8, num_layers=2),
        LSTMModel(C, hidden_size=8, num_layers=1, cell="gru"),
        LSTMModel(C, hidden_size=8, num_layers=2, bidirectional=True, head_size=0),
        TinyCNN(),
    ],
    ids=["lstm", "gru", "bilstm", "cnn"],
)
def test_export_matches_torch_with_a_dynamic_batch(model, tmp_path):
    predictor, info, path = _export(model, tmp_path)
    assert info["exporter"] == "torchscript" and info["opset"] >= 17
    assert not list(tmp_path.glob("*.data")), "weights must stay inside the .onnx file"
    sess = ox.session(path)
    for n in (1, 5, 33):  # the batch dimension is dynamic
        x = _windows(n)
        out = ox.run_onnx(sess, x)
        assert out.shape == (n,)
        assert parity(ox.run_torch(predictor, x), out, 1e-5, 1e-4)["passed"]


def test_dynamo_exporter_writes_one_file(tmp_path):
    predictor, info, path = _export(LSTMModel(C, hidden_size=8, num_layers=1), tmp_path, "dynamo")
    assert info["exporter"] == "dynamo" and info["opset"] >= 18
    assert [p.name for p in tmp_path.iterdir()] == ["m.onnx"]
    x = _windows(7)
    assert parity(ox.run_torch(predictor, x), ox.run_onnx(ox.session(path), x), 1e-5, 1e-4)[
        "passed"
    ]


def test_exporter_choice_and_errors():
    model = LSTMModel(C)
    assert ox.choose_exporter(model) == "torchscript"
    with pytest.raises(ConfigError, match=r"unknown export\.exporter"):
        ox.choose_exporter(model, "tflite")
    with pytest.raises(ConfigError, match="opset must be >= 17"):
        ox.export_onnx(model, T, C, "/tmp/never.onnx", opset=13)


def test_postprocessing_is_inside_the_graph(tmp_path):
    model = LSTMModel(C, hidden_size=8, num_layers=1)
    task = RULTask(model, functools.partial(torch.optim.Adam), target_scale=125.0)
    _, _, path = _export(model, tmp_path, post=task.postprocess)
    out = ox.run_onnx(ox.session(path), _windows(50))
    raw = model.eval()(torch.from_numpy(_windows(50))).squeeze(-1).detach().numpy()
    np.testing.assert_allclose(out, np.clip(raw * 125.0, 0, None), rtol=1e-4, atol=1e-3)


def test_parity_failure_names_the_errors():
    ref = np.array([1.0, 2.0, 3.0], np.float32)
    ok = parity(ref, ref + 1e-6, 1e-4, 0.0)
    assert ok["passed"] and ok["max_abs"] < 1e-5
    bad = parity(ref, ref + np.array([0, 0, 0.5], np.float32), 1e-4, 1e-3)
    assert not bad["passed"] and bad["worst_window"] == 2
    assert bad["max_abs"] == pytest.approx(0.5)
    with pytest.raises(ExportError, match=r"max abs error 0\.5"):
        require_parity(bad, "model.onnx")


# -- pruning ----------------------------------------------------------------------------
@pytest.mark.parametrize("kwargs", [{}, {"cell": "gru"}, {"bidirectional": True}, {"head_size": 0}])
def test_structured_pruning_really_shrinks_and_keeps_what_it_keeps(kwargs, tmp_path):
    torch.manual_seed(0)
    model = LSTMModel(C, hidden_size=16, num_layers=2, **kwargs).eval()
    x = torch.from_numpy(_windows(8))
    same = structured_prune(copy.deepcopy(model), 0.001)  # keeps every unit: same function
    torch.testing.assert_close(same(x), model(x))
    small = structured_prune(copy.deepcopy(model), 0.5)
    assert small.lstm.hidden_size == 8
    assert count_parameters(small) < 0.4 * count_parameters(model)
    assert small(x).shape == (8, 1)
    _, _, path = _export(small, tmp_path)
    rnn = next(n for n in onnx.load(str(path)).graph.node if n.op_type in ("LSTM", "GRU"))
    hidden = next(a.i for a in rnn.attribute if a.name == "hidden_size")
    assert hidden == 8, "the exported graph must have fewer units"


def test_magnitude_pruning_zeroes_the_smallest_weights_and_stays_through_training():
    torch.manual_seed(0)
    model = LSTMModel(C, hidden_size=16, num_layers=2)
    handles = magnitude_prune(model, 0.5)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    for _ in range(3):  # masks hold while fine-tuning
        opt.zero_grad()
        model(torch.from_numpy(_windows(8))).sum().backward()
        opt.step()
    out = model.eval()(torch.from_numpy(_windows(8)))
    make_permanent(handles)
    torch.testing.assert_close(model(torch.from_numpy(_windows(8))), out)
    weights = [p for n, p in model.named_parameters() if "weight" in n]
    zeros = sum(int((w == 0).sum()) for w in weights)
    assert zeros / sum(w.numel() for w in weights) == pytest.approx(0.5, abs=0.01)
    assert not any(n.endswith("_orig") for n, _ in model.named_parameters())


def test_pruning_bad_inputs():
    with pytest.raises(ConfigError, match="amount must be in"):
        prune_model(LSTMModel(C), "structured", 1.5)
    with pytest.raises(ConfigError, match=r"unknown export\.prune\.method"):
        prune_model(LSTMModel(C), "random", 0.5)
    with pytest.raises(ConfigError, match=r"use export\.prune\.method=magnitude"):
        structured_prune(TinyCNN(), 0.5)


# -- quantization -----------------------------------------------------------------------
def test_dynamic_int8_quantizes_the_lstm_and_shrinks_it(tmp_path):
    model = LSTMModel(C, hidden_size=64, num_layers=2, head_size=32)
    predictor, _, path = _export(model, tmp_path)
    info = quantize(path, tmp_path / "q.onnx")
    assert info["method"] == "dynamic"
    assert info["quantized_ops"].get("DynamicQuantizeLSTM") == 2
    assert (tmp_path / "q.onnx").stat().st_size < 0.32 * path.stat().st_size
    x = _windows(32)
    out = ox.run_onnx(ox.session(tmp_path / "q.onnx"), x)
    assert np.abs(out - ox.run_torch(predictor, x)).max() < 0.05  # probabilities


def test_gru_is_left_float_and_the_result_says_so(tmp_path):
    _, _, path = _export(LSTMModel(C, hidden_size=16, num_layers=1, cell="gru"), tmp_path)
    info = quantize(path, tmp_path / "q.onnx")
    assert info["float_ops"].get("GRU") == 1
    assert any("no INT8 GRU" in note for note in info["notes"])
    assert "GRU" in op_counts(tmp_path / "q.onnx")


def test_static_qdq_for_convolutions_uses_calibration(tmp_path):
    predictor, _, path = _export(TinyCNN(), tmp_path)
    info = quantize(path, tmp_path / "q.onnx", calibration=_windows(128))
    assert info["method"] == "static" and info["calibration_windows"] == 128
    assert op_counts(tmp_path / "q.onnx").get("QuantizeLinear", 0) > 0
    x = _windows(16, seed=1)
    out = ox.run_onnx(ox.session(tmp_path / "q.onnx"), x)
    assert np.abs(out - ox.run_torch(predictor, x)).max() < 0.05
    with pytest.raises(ConfigError, match="calibration windows"):
        quantize(path, tmp_path / "r.onnx", method="static", calibration=None)


# -- distillation -------------------------------------------------------------------------
def test_distillation_loss_pulls_the_student_towards_the_teacher():
    torch.manual_seed(0)
    teacher = LSTMModel(C, hidden_size=16, num_layers=1)
    student = FailureTask(LSTMModel(C, hidden_size=4, num_layers=1), torch.optim.Adam)
    student.set_teacher(teacher, alpha=0.0, temperature=2.0)  # only the teacher counts
    assert "teacher" not in "".join(student.state_dict())
    x = torch.from_numpy(_windows(64))
    batch = {"x": x, "y": torch.zeros(64)}
    student.log = lambda *a, **k: None  # outside a Trainer
    opt = torch.optim.Adam(student.parameters(), lr=0.01)
    with torch.no_grad():
        target = torch.sigmoid(teacher(x).squeeze(-1) / 2.0)
    gap0 = (torch.sigmoid(student(x) / 2.0) - target).abs().mean()
    for i in range(60):
        opt.zero_grad()
        student.training_step(batch, i).backward()
        opt.step()
    gap = (torch.sigmoid(student(x) / 2.0) - target).abs().mean()
    assert gap < 0.5 * gap0
    with pytest.raises(ConfigError, match="alpha must be in"):
        student.set_teacher(teacher, alpha=2.0)


def test_metric_change_limits_cover_every_task_kind():
    from plantml.export.recipe import _check_metric_change

    def variant(**overall):
        return {"name": "onnx_int8", "metrics": {"overall": overall}}

    limits = {"rmse": 0.5, "f1": 0.05, "false_alarm_rate": 0.05}
    # an anomaly model: rmse is another kind's metric (skipped), F1 and FAR are checked
    base = variant(f1=0.80, false_alarm_rate=0.10)
    assert (
        _check_metric_change(limits, base, variant(f1=0.78, false_alarm_rate=0.12), "anomaly") == []
    )
    problems = _check_metric_change(limits, base, variant(f1=0.70, false_alarm_rate=0.2), "anomaly")
    assert len(problems) == 2 and "f1 0.8 → 0.7" in problems[0]
    assert _check_metric_change(limits, variant(rmse=13.3), variant(rmse=13.9), "rul")
    # F1 not assessable (no positive window) is skipped, an unknown name is an error
    assert _check_metric_change({"f1": 0.05}, variant(f1=None), variant(f1=None), "failure") == []
    with pytest.raises(ConfigError, match="no task measures"):
        _check_metric_change({"rsme": 0.5}, variant(rmse=1.0), variant(rmse=1.0), "rul")
