"""The model zoo: every model trains one step under each task and passes every export path."""

from __future__ import annotations

import functools

import numpy as np
import onnx
import pytest
import torch

from plantml.errors import ConfigError
from plantml.export import onnx as ox
from plantml.export.quantize import op_counts, quantize
from plantml.export.verify import parity
from plantml.models import CNNModel, LSTMModel, SpectralModel, StatsModel, TransformerModel
from plantml.tasks import FailureTask, RULTask

T, C = 24, 3  # process-data windows
RAW_T, RAW_C = 256, 2  # raw-vibration windows for the spectral models
SPECTRAL_FRONT = {"n_fft": 64, "hop_length": 16}

# name -> (factory, window length, channels)
ZOO = {
    "lstm": (lambda: LSTMModel(C, hidden_size=8, num_layers=1), T, C),
    "transformer": (
        lambda: TransformerModel(C, d_model=16, num_layers=2, num_heads=4, dim_feedforward=32),
        T,
        C,
    ),
    "transformer_cls_learned": (
        lambda: TransformerModel(
            C, d_model=16, num_heads=2, positional="learned", pooling="cls", max_len=64
        ),
        T,
        C,
    ),
    "cnn": (lambda: CNNModel(C, channels=(8, 16), kernel_size=5, pooling="max"), T, C),
    "stats_mlp": (lambda: StatsModel(C, hidden_size=8), T, C),
    "wdcnn": (
        lambda: CNNModel(RAW_C, channels=(8, 16, 16), first_kernel_size=32, strides=(8, 2, 2)),
        RAW_T,
        RAW_C,
    ),
    "tcn": (
        lambda: CNNModel(C, channels=(8, 8, 8), kernel_size=3, dilation_growth=2, causal=True),
        T,
        C,
    ),
    "spectral_cnn": (
        lambda: SpectralModel(
            RAW_C,
            front_end=SPECTRAL_FRONT,
            backbone="cnn",
            backbone_kwargs={"channels": [16, 16], "kernel_size": 3},
        ),
        RAW_T,
        RAW_C,
    ),
    "spectral_conv_transformer": (
        lambda: SpectralModel(
            RAW_C,
            front_end={**SPECTRAL_FRONT, "kind": "mel", "n_mels": 16, "stft": "conv"},
            backbone="transformer",
            backbone_kwargs={"d_model": 16, "num_layers": 1},
        ),
        RAW_T,
        RAW_C,
    ),
}


def _windows(n: int, length: int, channels: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, length, channels)).astype(np.float32)


def _build(name: str):
    torch.manual_seed(0)
    factory, length, channels = ZOO[name]
    return factory(), length, channels


@pytest.mark.parametrize("name", list(ZOO))
def test_forward_backward_and_shapes(name):
    model, length, channels = _build(name)
    for window in (length, length + 7, 2 * length):
        x = torch.from_numpy(_windows(3, window, channels)).requires_grad_()
        out = model(x)
        assert out.shape == (3, 1)
        out.sum().backward()
        assert x.grad is not None and torch.isfinite(x.grad).all()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)


def test_several_outputs():
    x = torch.randn(2, T, C)
    assert TransformerModel(C, 3, d_model=8, num_heads=2)(x).shape == (2, 3)
    assert CNNModel(C, 3, channels=(4,), head_size=0)(x).shape == (2, 3)


@pytest.mark.parametrize(
    ("build", "match"),
    [
        (lambda: TransformerModel(C, d_model=10, num_heads=4), "not divisible by model.num_heads"),
        (lambda: TransformerModel(C, positional="rotary"), r"unknown model\.positional"),
        (lambda: TransformerModel(C, pooling="last"), r"unknown model\.pooling"),
        (lambda: CNNModel(C, pooling="avg"), r"unknown model\.pooling"),
        (lambda: CNNModel(C, norm="layer"), r"unknown model\.norm"),
        (lambda: CNNModel(C, channels=(8, 8), strides=(2, 2, 2)), "one stride per block"),
        (lambda: CNNModel(C, kernel_size=0), "integers >= 1"),
        (lambda: SpectralModel(C, backbone="resnet"), r"unknown model\.backbone"),
        (lambda: SpectralModel(C, front_end={"kind": "cqt"}), r"unknown front_end\.kind"),
        (lambda: SpectralModel(C, front_end={"stft": "fft"}), r"unknown front_end\.stft"),
        (lambda: SpectralModel(C, backbone_kwargs={"in_features": 3}), "set by the model"),
        (lambda: SpectralModel(C, backbone_kwargs={"hidden": 3}), "does not take"),
    ],
)
def test_bad_options_name_the_fix(build, match):
    with pytest.raises(ConfigError, match=match):
        build()


def test_windows_too_long_or_too_short_name_the_fix():
    with pytest.raises(ConfigError, match=r"set model\.max_len=65"):
        TransformerModel(C, d_model=8, num_heads=2, max_len=64)(torch.randn(1, 65, C))
    with pytest.raises(ConfigError, match="use n_fft <= 30"):
        SpectralModel(C, front_end={"n_fft": 64})(torch.randn(1, 16, C))


@pytest.mark.parametrize("name", list(ZOO))
@pytest.mark.parametrize("task_cls", [RULTask, FailureTask])
def test_one_training_step_under_each_task(name, task_cls):
    model, length, channels = _build(name)
    task = task_cls(model, functools.partial(torch.optim.AdamW, lr=1e-3))
    task.log = lambda *a, **k: None
    n = 4
    y = torch.tensor([0.0, 1.0, 0.0, 1.0]) if task_cls is FailureTask else torch.rand(n) * 100
    batch = {
        "x": torch.from_numpy(_windows(n, length, channels)),
        "y": y,
        "condition": torch.zeros(n, dtype=torch.long),
        "asset": torch.arange(n),
        "end": torch.full((n,), length),
    }
    optimizer = task.configure_optimizers()
    task.train()
    loss = task.training_step(batch, 0)
    assert loss.ndim == 0 and torch.isfinite(loss)
    loss.backward()
    optimizer.step()


def _float_until_log(path) -> bool:
    """No QuantizeLinear between the graph's STFT and the Log after it."""
    nodes = onnx.load(str(path)).graph.node
    consumers: dict[str, list] = {}
    for node in nodes:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    todo = [o for node in nodes if node.op_type == "STFT" for o in node.output]
    assert todo, "no STFT op in the graph"
    while todo:
        for node in consumers.get(todo.pop(), []):
            if node.op_type == "QuantizeLinear":
                return False
            if node.op_type != "Log":
                todo.extend(node.output)
    return True


# every model × every export path: ONNX (auto exporter) + parity, then INT8
EXPECTED_EXPORTER = {"spectral_cnn": "dynamo"}  # torchaudio's STFT; the rest: torchscript


@pytest.mark.parametrize("name", list(ZOO))
def test_every_export_path(name, tmp_path):
    model, length, channels = _build(name)
    predictor = ox.Predictor(model.eval(), torch.sigmoid).eval()
    path = tmp_path / "model.onnx"
    info = ox.export_onnx(predictor, length, channels, path)
    assert info["exporter"] == EXPECTED_EXPORTER.get(name, "torchscript")
    assert info["opset"] == (18 if info["exporter"] == "dynamo" else 17)
    sess = ox.session(path)
    for n in (1, 5):  # the batch dimension is dynamic
        x = _windows(n, length, channels, seed=n)
        out = ox.run_onnx(sess, x)
        assert out.shape == (n,)
        result = parity(ox.run_torch(predictor, x), out, 1e-5, 1e-4)
        assert result["passed"], result

    calibration = _windows(32, length, channels, seed=7)
    quantized = tmp_path / "int8.onnx"
    report = quantize(path, quantized, "auto", calibration=calibration)
    dynamic = name in ("lstm", "stats_mlp") or name.startswith("transformer")  # no Conv ops
    assert report["method"] == ("dynamic" if dynamic else "static")
    ops = op_counts(quantized)
    int8_ops = ("QuantizeLinear", "DynamicQuantizeLSTM", "MatMulInteger", "DynamicQuantizeMatMul")
    assert sum(ops.get(op, 0) for op in int8_ops) > 0
    if name == "spectral_cnn":
        assert _float_until_log(quantized), "INT8 must not touch the linear power spectrum"
    x = _windows(16, length, channels, seed=11)
    int8 = ox.run_onnx(ox.session(quantized), x)
    assert np.isfinite(int8).all()
    assert np.abs(int8 - ox.run_torch(predictor, x)).max() < 0.1  # probabilities
