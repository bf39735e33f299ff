"""A classical model (trees on window statistics) as one ONNX graph from the raw window.

The bundle contract stays: input ``window`` ``(batch, time, channels)`` float32 (normalized),
output ``prediction`` ``(batch,)``. The graph is

    window ─► WindowStats (exported from the same torch module that fed the fit)
           ─► TreeEnsembleRegressor (ai.onnx.ml) ─► post-processing ─► prediction

Post-processing per task: RUL ``max(raw * target_scale, 0)``, failure ``sigmoid(raw)``,
anomaly (isolation forest) ``2 ** (-depth_sum / (trees * c)) + offset`` (=
``-decision_function``).

Exactness. The statistics are computed in float64 and rounded to float32 on both sides:
computed in float32, torch and ONNX Runtime differ in the last bits, and gradient boosting
puts split thresholds on training values, so a window whose statistic equals a threshold
went the other way now and then; the float64 results differ by ~1e-16 and round to the
same float32. The trees compare that float32 with every threshold rounded *down* to the
largest float32 not above it, so ``x <= t`` decides exactly as scikit-learn's float64
comparison does. The trees are written here rather than by skl2onnx: skl2onnx 1.20 cannot
convert scikit-learn 1.9's HistGradientBoosting with onnx 1.23 (a boolean node attribute),
and it rounds thresholds to the nearest float32.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper

from plantml.export.onnx import INPUT, OUTPUT, compact, export_onnx
from plantml.models.classical import Float64Stats

ML_DOMAIN, ML_OPSET = "ai.onnx.ml", 3


def float32_floor(values: np.ndarray) -> np.ndarray:
    """The largest float32 not above each float64 value (so ``x32 <= t`` ⇔ ``x32 <= t32``)."""
    values = np.asarray(values, np.float64)
    out = values.astype(np.float32)
    up = out.astype(np.float64) > values
    out[up] = np.nextafter(out[up], np.float32(-np.inf))
    return out


def tree_ensemble_node(trees: list[dict], base: float, inp: str, out: str) -> onnx.NodeProto:
    """One ``TreeEnsembleRegressor`` summing the leaves of ``trees`` plus ``base``: ``(N, 1)``.

    Thresholds are rounded down to float32 (:func:`float32_floor`) for the float32 input.
    """
    attrs: dict[str, list] = {k: [] for k in (
        "nodes_treeids", "nodes_nodeids", "nodes_featureids", "nodes_modes", "nodes_values",
        "nodes_truenodeids", "nodes_falsenodeids", "nodes_missing_value_tracks_true",
        "target_treeids", "target_nodeids", "target_ids", "target_weights",
    )}  # fmt: skip
    for tid, t in enumerate(trees):
        n = len(t["feature"])
        leaf = t["leaf"]
        attrs["nodes_treeids"] += [tid] * n
        attrs["nodes_nodeids"] += list(range(n))
        attrs["nodes_featureids"] += [
            int(f) if not lf else 0 for f, lf in zip(t["feature"], leaf, strict=True)
        ]
        attrs["nodes_modes"] += ["LEAF" if lf else "BRANCH_LEQ" for lf in leaf]
        attrs["nodes_values"] += np.where(leaf, 0.0, t["threshold"]).tolist()
        attrs["nodes_truenodeids"] += np.where(leaf, 0, t["left"]).astype(int).tolist()
        attrs["nodes_falsenodeids"] += np.where(leaf, 0, t["right"]).astype(int).tolist()
        attrs["nodes_missing_value_tracks_true"] += (
            np.where(leaf, 0, t["missing_left"]).astype(int).tolist()
        )
        leaves = np.flatnonzero(leaf)
        attrs["target_treeids"] += [tid] * len(leaves)
        attrs["target_nodeids"] += leaves.tolist()
        attrs["target_ids"] += [0] * len(leaves)
        attrs["target_weights"] += t["value"][leaves].astype(np.float64).tolist()
    attrs["nodes_values"] = float32_floor(np.asarray(attrs["nodes_values"])).tolist()
    return helper.make_node(
        "TreeEnsembleRegressor",
        [inp],
        [out],
        domain=ML_DOMAIN,
        n_targets=1,
        aggregate_function="SUM",
        post_transform="NONE",
        base_values=[float(base)],
        **attrs,
    )


def _post_nodes(predictor, raw: str) -> tuple[list, list]:
    """(nodes, initializers) from the ensemble output ``raw`` ``(N, 1)`` to ``prediction``."""
    inits = [numpy_helper.from_array(np.array([-1], np.int64), "trees_flat")]
    model = predictor.model
    if predictor.kind == "rul":
        inits.append(numpy_helper.from_array(np.array(predictor.scale, np.float32), "trees_scale"))
        nodes = [
            helper.make_node("Mul", [raw, "trees_scale"], ["trees_scaled"]),
            helper.make_node("Relu", ["trees_scaled"], ["trees_out"]),
        ]
    elif predictor.kind == "failure":
        nodes = [helper.make_node("Sigmoid", [raw], ["trees_out"])]
    else:  # isolation forest: -decision_function = 2 ** (-mean depth / c) + offset
        denom = len(model.estimator.estimators_) * model.path_scale()
        inits += [
            numpy_helper.from_array(np.array(-1.0 / denom, np.float32), "trees_norm"),
            numpy_helper.from_array(np.array(2.0, np.float32), "trees_two"),
            numpy_helper.from_array(np.array(model.estimator.offset_, np.float32), "trees_offset"),
        ]
        nodes = [
            helper.make_node("Mul", [raw, "trees_norm"], ["trees_exponent"]),
            helper.make_node("Pow", ["trees_two", "trees_exponent"], ["trees_power"]),
            helper.make_node("Add", ["trees_power", "trees_offset"], ["trees_out"]),
        ]
    nodes.append(helper.make_node("Reshape", ["trees_out", "trees_flat"], [OUTPUT]))
    return nodes, inits


def export_classical(
    predictor, window_length: int, n_features: int, path: str | Path, opset: int = 17
) -> dict:
    """Write a fitted :class:`~plantml.tasks.classical.ClassicalPredictor` as one ONNX file.

    Returns the facts :func:`plantml.export.onnx.export_onnx` returns (exporter ``trees``).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    model = predictor.model
    with tempfile.TemporaryDirectory() as tmp:
        front = Path(tmp) / "stats.onnx"
        export_onnx(
            Float64Stats(model.features).eval(),
            window_length,
            n_features,
            front,
            "torchscript",
            opset,
        )
        graph_model = onnx.load(str(front))
    graph = graph_model.graph
    stats = "window_stats"
    for node in graph.node:
        node.output[:] = [stats if o == OUTPUT else o for o in node.output]
    graph.node.append(helper.make_node("Cast", [stats], ["window_stats_f32"], to=1))
    base = model.baseline() if model.family == "gbm" else 0.0
    nodes, inits = _post_nodes(predictor, "trees_raw")
    tree = tree_ensemble_node(model.trees(), base, "window_stats_f32", "trees_raw")
    graph.node.extend([tree, *nodes])
    graph.initializer.extend(inits)
    del graph.output[:]
    graph.output.append(helper.make_tensor_value_info(OUTPUT, onnx.TensorProto.FLOAT, ["batch"]))
    graph_model.opset_import.append(helper.make_opsetid(ML_DOMAIN, ML_OPSET))
    onnx.checker.check_model(graph_model)
    onnx.save(graph_model, str(path))
    compact(path)
    assert graph.input[0].name == INPUT
    return {
        "exporter": "trees",
        "opset": int(opset),
        "export_seconds": round(time.perf_counter() - start, 3),
        "bytes": path.stat().st_size,
        "trees": len(model.trees()),
    }
