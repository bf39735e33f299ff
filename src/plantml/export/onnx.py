"""Every model passes through here on its way to ONNX: export, run, time.

The exported graph maps a normalized window ``(batch, time, channels)`` float32
to the final prediction ``(batch,)`` (failure probability, RUL): the task's
post-processing (sigmoid, RUL scale) is part of the graph, so the edge runtime
never needs to know it.
"""

from __future__ import annotations

import logging
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
from torch import nn

from plantml.errors import ConfigError, PlantMLError

log = logging.getLogger(__name__)
INPUT, OUTPUT = "window", "prediction"
EXPORTERS = ("auto", "torchscript", "dynamo")


class ExportError(PlantMLError):
    """A model could not be exported or its export does not match torch."""


class Predictor(nn.Module):
    """A task's model plus its post-processing: window → final prediction ``(batch,)``."""

    def __init__(self, model: nn.Module, postprocess: Callable[[torch.Tensor], torch.Tensor]):
        super().__init__()
        self.model = model
        self._postprocess = postprocess

    def forward(self, window: torch.Tensor) -> torch.Tensor:
        return self._postprocess(self.model(window).squeeze(-1))


def predictor(task) -> nn.Module:
    """The :class:`Predictor` of a trained task (eval mode, on the CPU).

    A task with an ``export_module()`` method (the anomaly task: window →
    reconstruction error) provides its own window → ``(batch,)`` module; the class
    task's gives class probabilities ``(batch, K)``.
    """
    task = task.cpu().eval()
    if hasattr(task, "export_module"):
        return task.export_module().eval()
    return Predictor(task.model, task.postprocess).eval()


def _needs_dynamo(model: nn.Module) -> bool:
    """TorchScript export cannot express STFT (torchaudio spectrogram front ends)."""
    names = {type(m).__name__ for m in model.modules()}
    return bool(names & {"Spectrogram", "MelSpectrogram", "STFT"})


def choose_exporter(model: nn.Module, exporter: str = "auto") -> str:
    """``torchscript`` (fast and compact for RNNs) unless the model needs ``dynamo``."""
    if exporter not in EXPORTERS:
        raise ConfigError(
            f"unknown export.exporter {exporter!r}; use one of {', '.join(EXPORTERS)}"
        )
    if exporter != "auto":
        return exporter
    return "dynamo" if _needs_dynamo(model) else "torchscript"


def export_onnx(
    model: nn.Module,
    window_length: int,
    n_features: int,
    path: str | Path,
    exporter: str = "auto",
    opset: int = 17,
) -> dict:
    """Write ``model`` to one self-contained ``.onnx`` file with a dynamic batch.

    Returns facts for the manifest: exporter used, opset, seconds, file size.
    """
    if opset < 17:
        raise ConfigError(f"export.opset must be >= 17 (LayerNormalization, STFT), got {opset}")
    if getattr(model, "classical", False):  # trees on window statistics: their own graph
        from plantml.export.classical import export_classical

        return export_classical(model, window_length, n_features, path, opset)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    chosen = choose_exporter(model, exporter)
    example = torch.randn(2, window_length, n_features)
    model = model.cpu().eval()
    start = time.perf_counter()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # exporter chatter (LSTM batch_first, dynamo notes)
        try:
            if chosen == "torchscript":
                torch.onnx.export(
                    model,
                    (example,),
                    str(path),
                    input_names=[INPUT],
                    output_names=[OUTPUT],
                    dynamic_axes={INPUT: {0: "batch"}, OUTPUT: {0: "batch"}},
                    opset_version=opset,
                    dynamo=False,
                )
            else:
                batch = torch.export.Dim("batch", min=1, max=1 << 16)
                program = torch.onnx.export(
                    model,
                    (example,),
                    input_names=[INPUT],
                    output_names=[OUTPUT],
                    dynamic_shapes=({0: batch},),
                    opset_version=max(opset, 18),
                    dynamo=True,
                    verbose=False,
                )
                program.save(str(path), external_data=False)
        except Exception as exc:  # exporter failures come in many types
            raise ExportError(
                f"the {chosen} exporter cannot export {type(model).__name__}: "
                f"{str(exc).splitlines()[0][:300]}; try export.exporter="
                f"{'dynamo' if chosen == 'torchscript' else 'torchscript'}"
            ) from exc
    seconds = time.perf_counter() - start
    compact(path)
    graph = onnx.load(str(path))
    onnx.checker.check_model(graph)
    side_files = sorted(p.name for p in path.parent.glob(path.name + ".data"))
    if side_files:
        raise ExportError(
            f"the export wrote external weights {side_files}; bundles must be one file"
        )
    return {
        "exporter": chosen,
        "opset": int(next(o.version for o in graph.opset_import if o.domain in ("", "ai.onnx"))),
        "export_seconds": round(seconds, 3),
        "bytes": path.stat().st_size,
    }


def compact(path: str | Path) -> int:
    """Drop what inference never reads (shape annotations, node names); returns bytes.

    Lossless: outputs are bit-identical. On a small LSTM this is ~5 % of the file.
    """
    graph = onnx.load(str(path))
    del graph.graph.value_info[:]
    for node in graph.graph.node:
        node.name = ""
    onnx.save(graph, str(path))
    return Path(path).stat().st_size


def session(path: str | Path, threads: int = 1) -> ort.InferenceSession:
    """An ONNX Runtime CPU session with ``threads`` intra-op threads."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = int(threads)
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _stack(out: list[np.ndarray], n: int) -> np.ndarray:
    """Batches → ``(n,)``, or ``(n, K)`` for a model with K outputs per window (class task)."""
    if not out:
        return np.zeros(0, np.float32)
    stacked = np.concatenate(out)
    return (
        stacked.reshape(n, -1)
        if stacked.ndim == 2 and stacked.shape[-1] > 1
        else stacked.reshape(n)
    )


def run_onnx(sess: ort.InferenceSession, windows: np.ndarray, batch_size: int = 1024) -> np.ndarray:
    """Predictions ``(n,)`` (``(n, K)`` class probabilities) for windows ``(n, time, channels)``."""
    name = sess.get_inputs()[0].name
    out = [
        sess.run(None, {name: np.ascontiguousarray(windows[i : i + batch_size], np.float32)})[0]
        for i in range(0, len(windows), batch_size)
    ]
    return _stack(out, len(windows))


def run_torch(model: nn.Module, windows: np.ndarray, batch_size: int = 1024) -> np.ndarray:
    """The same for a torch module on the CPU."""
    model = model.cpu().eval()
    out = []
    with torch.no_grad():
        for i in range(0, len(windows), batch_size):
            out.append(model(torch.from_numpy(np.asarray(windows[i : i + batch_size]))).numpy())
    return _stack(out, len(windows))


def timing(call: Callable[[np.ndarray], object], window: np.ndarray, repeats: int = 200) -> dict:
    """Single-call latency p50 / p99 in milliseconds (after 20 warm-up calls)."""
    for _ in range(20):
        call(window)
    times = np.empty(repeats)
    for i in range(repeats):
        start = time.perf_counter()
        call(window)
        times[i] = time.perf_counter() - start
    return {
        "p50_ms": float(np.percentile(times, 50) * 1e3),
        "p99_ms": float(np.percentile(times, 99) * 1e3),
    }


def onnx_latency(
    path: str | Path, window: np.ndarray, threads: int = 1, repeats: int = 200
) -> dict:
    """Latency of one ``window`` ``(1, time, channels)`` through ONNX Runtime."""
    sess = session(path, threads)
    name = sess.get_inputs()[0].name
    window = np.ascontiguousarray(window, np.float32)
    return timing(lambda w: sess.run(None, {name: w}), window, repeats)


def torch_latency(
    model: nn.Module, window: np.ndarray, threads: int = 1, repeats: int = 200
) -> dict:
    """Latency of one window through torch eager on ``threads`` threads."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        x = torch.from_numpy(np.ascontiguousarray(window, np.float32))
        model = model.cpu().eval()
        with torch.no_grad():
            return timing(model, x, repeats)
    finally:
        torch.set_num_threads(before)


def checkpoint_latency_ms(ckpt_path: str | Path, threads: int = 1, repeats: int = 200) -> float:
    """p50 single-window ONNX Runtime latency of a training checkpoint (for sweeps)."""
    import tempfile

    from plantml.evaluation.checkpoint import load_run

    _, _, datamodule, task, _ = load_run(ckpt_path, ["data.num_workers=0"])
    data = datamodule.data
    window = datamodule.dataset("val").gather(np.arange(min(1, len(data.windows["val"]))))
    if not len(window):
        window = np.zeros((1, data.window_length, len(data.feature_names)), np.float32)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.onnx"
        export_onnx(predictor(task), data.window_length, len(data.feature_names), path)
        return onnx_latency(path, window[:1], threads, repeats)["p50_ms"]
