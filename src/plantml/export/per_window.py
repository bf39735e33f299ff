"""Make a model's prediction for a window independent of the other windows in its call.

ONNX Runtime's dynamic INT8 quantization (``DynamicQuantizeLinear``,
``DynamicQuantizeLSTM``, ``DynamicQuantizeMatMul``) computes one activation
scale over the whole input tensor of a call, so a window's prediction changes
(by up to 1e-2 on an LSTM) with the other windows that share its batch: batch
and streaming predictions differ, and one wild window moves its neighbours'.

:func:`wrap_per_window` rewrites such a graph into one that runs the original
graph once per window inside an ONNX ``Loop`` over the batch dimension: each
window gets its own scales, results are identical to calling the model with a
batch of one, and the model still takes and returns whole batches (so every
consumer of ``model.onnx`` gets the fix, not only plantml's runtime). On the
benchmark LSTM it scores 8.5 k windows/s against 7.1 k for one ONNX call per
window and 23 k batched (``scripts/bench_edge.py --per-window``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

DYNAMIC_OPS = {"DynamicQuantizeLinear", "DynamicQuantizeLSTM", "DynamicQuantizeMatMul"}
PREFIX = "per_window_"


def batch_dependent_ops(model: onnx.ModelProto) -> set[str]:
    """The ops of the main graph whose result depends on the whole batch (dynamic quantization)."""
    return {node.op_type for node in model.graph.node} & DYNAMIC_OPS


def wrap_per_window(src: str | Path, dst: str | Path) -> bool:
    """Write ``src`` to ``dst`` as a Loop over windows if it has batch-dependent ops.

    Returns True when it wrapped the model (``dst`` then holds the new graph),
    False when ``src`` is already batch-independent (``dst`` is a copy). The
    model must have one input (batch, ...) and one output whose first dimension
    is the batch.
    """
    model = onnx.load(str(src))
    if not batch_dependent_ops(model):
        onnx.save(model, str(dst))
        return False
    graph = model.graph
    constant = {init.name for init in graph.initializer}
    inputs = [i for i in graph.input if i.name not in constant]
    if len(inputs) != 1 or len(graph.output) != 1:
        raise ValueError(f"{src}: per-window wrapping needs one input and one output")
    window, prediction = inputs[0].name, graph.output[0].name
    rename = {window: PREFIX + "window_i", prediction: PREFIX + "prediction_i"}
    body_nodes = []
    for node in graph.node:
        copy = onnx.NodeProto()
        copy.CopyFrom(node)
        copy.input[:] = [rename.get(name, name) for name in node.input]
        copy.output[:] = [rename.get(name, name) for name in node.output]
        body_nodes.append(copy)
    p = PREFIX
    # body: slice window i (keeping the batch axis of 1), run the original graph on it
    body = helper.make_graph(
        [
            helper.make_node("Unsqueeze", [p + "i", p + "axis0"], [p + "start"]),
            helper.make_node("Add", [p + "start", p + "one"], [p + "end"]),
            helper.make_node(
                "Slice", [window, p + "start", p + "end", p + "axis0"], [rename[window]]
            ),
            helper.make_node("Identity", [p + "cond_in"], [p + "cond_out"]),
            *body_nodes,
        ],
        "per_window_body",
        [
            helper.make_tensor_value_info(p + "i", TensorProto.INT64, []),
            helper.make_tensor_value_info(p + "cond_in", TensorProto.BOOL, []),
        ],
        [
            helper.make_tensor_value_info(p + "cond_out", TensorProto.BOOL, []),
            helper.make_tensor_value_info(
                rename[prediction], graph.output[0].type.tensor_type.elem_type, None
            ),
        ],
    )
    constants = [
        numpy_helper.from_array(np.array([0], np.int64), p + "axis0"),
        numpy_helper.from_array(np.array([1], np.int64), p + "axis1"),
        numpy_helper.from_array(np.array([1], np.int64), p + "one"),
        numpy_helper.from_array(np.array(0, np.int64), p + "zero"),
        numpy_helper.from_array(np.array(True), p + "true"),
    ]
    outer = helper.make_graph(
        [
            helper.make_node("Shape", [window], [p + "shape"]),
            helper.make_node("Gather", [p + "shape", p + "zero"], [p + "n"], axis=0),
            helper.make_node("Loop", [p + "n", p + "true"], [p + "stacked"], body=body),
            # stacked is (batch, 1, ...): each window's output kept its batch axis of 1
            helper.make_node("Squeeze", [p + "stacked", p + "axis1"], [prediction]),
        ],
        graph.name,
        list(graph.input),
        list(graph.output),
        initializer=[*graph.initializer, *constants],
    )
    wrapped = helper.make_model(outer, opset_imports=list(model.opset_import))
    wrapped.ir_version = model.ir_version
    onnx.checker.check_model(wrapped)
    onnx.save(wrapped, str(dst))
    return True
