"""INT8 quantization with ONNX Runtime, chosen per model.

ONNX Runtime quantizes

- *dynamically* (weights INT8, activations quantized on the fly): LSTM and
  MatMul / Gemm layers; this suits recurrent models and transformers.
- *statically* (QDQ, activations calibrated on training windows):
  convolutions, MatMul, attention; this suits CNNs. Static QDQ leaves LSTM in
  float.

``auto`` picks static when the graph has convolutions, else dynamic. On a
trained C-MAPSS transformer (d_model 64) static QDQ gave 202 KB and 0.70 ms per
window against 139 KB and about the float latency for dynamic, at the same
RMSE: the Q/DQ pairs around every small MatMul cost more than they save.

Dynamic scales span the whole input of a call, so a window's prediction would
change with the other windows of its batch (up to 5e-3 on the benchmark LSTM).
:func:`quantize` reports ``per_window: true`` for such graphs and the bundle's
manifest tells the runtime to call the model one window at a time
(``scripts/bench_edge.py --per-window``, two runs: 0.29-0.32x the float model's batch
throughput against 0.40-0.41x for a Loop over windows inside the graph, but 43-53 µs per
single window against 58-60 µs; streaming, the device's usual mode, calls one window at a
time anyway).

Neither quantizes GRU: a GRU model keeps its recurrent layers in float and
only its Linear layers shrink. :func:`quantize` says so in its result rather
than pretend.
"""

from __future__ import annotations

import collections
import logging
from pathlib import Path

import numpy as np
import onnx
from onnxruntime.quantization import (
    CalibrationDataReader,
    QuantFormat,
    QuantType,
    quantize_dynamic,
    quantize_static,
)

from plantml.edge.bundle import DYNAMIC_QUANT_OPS
from plantml.errors import ConfigError
from plantml.export.onnx import compact

log = logging.getLogger(__name__)
METHODS = ("auto", "dynamic", "static")
RECURRENT_OPS = {"LSTM", "GRU", "RNN"}
FLOAT_OPS = {"LSTM", "GRU", "RNN", "MatMul", "Gemm", "Conv", "ConvTranspose"}


def op_counts(path: str | Path) -> dict[str, int]:
    """How many nodes of each op type the graph has (main graph and subgraphs)."""
    counts: collections.Counter = collections.Counter()

    def walk(graph) -> None:
        for node in graph.node:
            counts[node.op_type] += 1
            for attr in node.attribute:
                if attr.type == onnx.AttributeProto.GRAPH:
                    walk(attr.g)

    walk(onnx.load(str(path)).graph)
    return dict(sorted(counts.items()))


def choose_method(path: str | Path, method: str = "auto") -> str:
    """``static`` for graphs with convolutions, else ``dynamic`` (RNNs, transformers, MLPs)."""
    if method not in METHODS:
        raise ConfigError(
            f"unknown export.quantize.method {method!r}; use one of {', '.join(METHODS)}"
        )
    if method != "auto":
        return method
    ops = set(op_counts(path))
    return "static" if {"Conv", "ConvTranspose"} & ops and not RECURRENT_OPS & ops else "dynamic"


class _Windows(CalibrationDataReader):
    """Feeds calibration windows one batch at a time."""

    def __init__(self, input_name: str, windows: np.ndarray, batch_size: int = 64):
        self.batches = iter(
            [
                {input_name: np.ascontiguousarray(windows[i : i + batch_size], np.float32)}
                for i in range(0, len(windows), batch_size)
            ]
        )

    def get_next(self):
        return next(self.batches, None)


def _run(src, dst, method: str, calibration: np.ndarray | None, per_channel: bool) -> None:
    if method == "dynamic":
        quantize_dynamic(
            str(src),
            str(dst),
            weight_type=QuantType.QInt8,
            per_channel=per_channel,
            op_types_to_quantize=["LSTM", "MatMul", "Gemm", "Attention"],
        )
        return
    if calibration is None or not len(calibration):
        raise ConfigError("static quantization needs calibration windows (none were given)")
    input_name = onnx.load(str(src)).graph.input[0].name
    quantize_static(
        str(src),
        str(dst),
        _Windows(input_name, calibration),
        quant_format=QuantFormat.QDQ,
        activation_type=QuantType.QInt8,
        weight_type=QuantType.QInt8,
        per_channel=per_channel,
    )


def quantize(
    src: str | Path,
    dst: str | Path,
    method: str = "auto",
    calibration: np.ndarray | None = None,
    per_channel: bool = False,
) -> dict:
    """Quantize ``src`` to INT8 at ``dst``; returns what was done and what stayed float.

    ``calibration`` holds normalized training windows ``(n, time, channels)``;
    static quantization needs it.
    """
    chosen = choose_method(src, method)
    before = op_counts(src)
    root = logging.getLogger()
    level = root.level
    root.setLevel(
        logging.ERROR
    )  # the quantizer logs advice and per-tensor notes on the root logger
    try:
        _run(src, dst, chosen, calibration, per_channel)
    finally:
        root.setLevel(level)
    compact(dst)
    after = op_counts(dst)
    # dynamic activation scales span a call's whole input: the bundle says to score each
    # window in its own call, so a prediction never depends on the rest of its batch
    per_window = bool(set(DYNAMIC_QUANT_OPS) & set(after))
    still_float = {op: n for op, n in after.items() if op in FLOAT_OPS}
    if chosen == "static":
        # in QDQ graphs float ops sit between Q/DQ pairs: they run in INT8 kernels
        quantized = {"QuantizeLinear": after.get("QuantizeLinear", 0)}
        still_float = {op: n for op, n in still_float.items() if op in RECURRENT_OPS}
    else:
        quantized = {op: n for op, n in after.items() if op not in before}
    notes = []
    if "GRU" in still_float:
        notes.append(
            "ONNX Runtime has no INT8 GRU: the GRU layers stay float32; only Linear layers "
            "are INT8 (use model.cell=lstm for a smaller INT8 model)"
        )
    if "TreeEnsembleRegressor" in after and not quantized:
        notes.append(
            "a tree ensemble has no INT8 form in ONNX Runtime: the int8 variant is the float "
            "graph (same size and outputs)"
        )
    if chosen == "static" and "LSTM" in still_float:
        notes.append("static QDQ does not quantize LSTM: use export.quantize.method=dynamic")
    for note in notes:
        log.warning("%s", note)
    return {
        "method": chosen,
        "per_channel": per_channel,
        "calibration_windows": 0
        if chosen == "dynamic" or calibration is None
        else len(calibration),
        "quantized_ops": quantized,
        "float_ops": still_float,
        "per_window": per_window,
        "notes": notes,
    }
