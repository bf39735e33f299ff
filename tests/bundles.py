"""Edge bundles built by hand for tests: a MatMul ONNX graph with known weights over the
flattened window, so every expected prediction is a numpy one-liner (``weights.npy`` keeps
the weights beside the model, :func:`reference` computes them loop by loop)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from plantml.edge.bundle import write_manifest


def onnx_model(path: Path, length: int, channels: int, weights: np.ndarray, batch=None) -> None:
    """prediction (batch, 1) = flatten(window) @ weights; ``batch`` fixes the batch size."""
    from onnx import TensorProto, helper, numpy_helper, save

    dim = batch or "batch"
    graph = helper.make_graph(
        [
            helper.make_node("Reshape", ["window", "shape"], ["flat"]),
            helper.make_node("MatMul", ["flat", "weights"], ["prediction"]),
        ],
        "edge_test",
        [helper.make_tensor_value_info("window", TensorProto.FLOAT, [dim, length, channels])],
        [helper.make_tensor_value_info("prediction", TensorProto.FLOAT, [dim, 1])],
        initializer=[
            numpy_helper.from_array(np.array([-1, length * channels], np.int64), "shape"),
            numpy_helper.from_array(weights.reshape(-1, 1).astype(np.float32), "weights"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    save(model, str(path))


def make_bundle(
    folder: Path,
    features=("a", "b"),
    length: int = 3,
    stride: int = 1,
    max_gap: float | None = None,
    time_kind: str = "number",
    conditions: dict | None = None,
    offset=None,
    scale=None,
    per_condition: bool = False,
    threshold: float | None = None,
    alarm_when: str | None = "above",
    batch=None,
    seed: int = 0,
    name: str = "test-bundle",
    metrics: dict | None = None,
    lineage: dict | None = None,
    task_extra: dict | None = None,
) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    conditions = conditions or {"mode": "single", "names": ["all"]}
    n_cond = len(conditions["names"])
    rng = np.random.default_rng(seed)
    if offset is None:
        offset = rng.normal(0, 1, (n_cond + 1, len(features)))
    if scale is None:
        scale = rng.uniform(0.5, 2.0, (n_cond + 1, len(features)))
    weights = rng.normal(0, 1, length * len(features))
    onnx_model(folder / "model.onnx", length, len(features), weights, batch)
    np.save(folder / "weights.npy", weights)  # kept for the tests (and a second listed file)
    manifest = {
        "format": "plantml-edge-bundle",
        "format_version": 1,
        "name": name,
        "version": "1",
        "created": "2024-01-01T00:00:00Z",
        "plantml_version": "0.1.0",
        "model": {"file": "model.onnx", "input": "window", "output": "prediction", "opset": 17},
        "input": {
            "asset_column": "unit",
            "time_column": "t",
            "time_kind": time_kind,
            "sampling_period": None if max_gap is None else max_gap / 1.5,
            "max_gap": max_gap,
            "feature_columns": list(features),
            "dtypes": dict.fromkeys(features, "float32"),
            "window_length": length,
            "stride": stride,
        },
        "normalization": {
            "method": "standard",
            "per_condition": per_condition,
            "offset": np.asarray(offset, float).tolist(),
            "scale": np.asarray(scale, float).tolist(),
        },
        "conditions": {
            "column": None,
            "settings": None,
            "categories": [],
            "center": None,
            "scale": None,
            "centroids": None,
            **conditions,
        },
        "task": {
            "kind": "failure",
            "output_name": "score",
            "description": "test score",
            "unit": None,
            "threshold": threshold,
            "alarm_when": alarm_when if threshold is not None else None,
            **(task_extra or {}),
        },
        "lineage": lineage or {},
        "metrics": metrics if metrics is not None else {"test/auroc": 0.91, "val/auroc": 0.9},
    }
    write_manifest(folder, manifest)
    return folder


def reference(bundle_dir: Path, rows: list[dict], codes: list[int] | None = None):
    """Loop-by-loop reference: {(asset, time): (window (T, C), value)} for well-formed rows."""
    m = json.loads((bundle_dir / "manifest.json").read_text())
    inp, norm = m["input"], m["normalization"]
    offset, scale = np.array(norm["offset"]), np.array(norm["scale"])
    weights = np.load(bundle_dir / "weights.npy")
    length, stride, gap = inp["window_length"], inp["stride"], inp["max_gap"]
    n_cond = len(offset) - 1
    buffers, out = {}, {}
    for i, row in enumerate(rows):
        a, t = row["unit"], float(row["t"])
        x = np.array([float(row[c]) for c in inp["feature_columns"]])
        c = codes[i] if codes is not None else 0
        idx = c if norm["per_condition"] and 0 <= c < n_cond else n_cond
        z = ((x - offset[idx]) / scale[idx]).astype(np.float32)
        buf = buffers.setdefault(a, {"rows": [], "last": None, "n": 0})
        if buf["last"] is not None and gap is not None and t - buf["last"] > gap:
            buf["rows"], buf["n"] = [], 0
        buf["last"] = t
        buf["rows"].append(z)
        if len(buf["rows"]) >= length:
            buf["n"] += 1
            if (buf["n"] - 1) % stride == 0:
                win = np.stack(buf["rows"][-length:])
                out[(a, row["t"])] = (win, float(win.reshape(-1).astype(np.float64) @ weights))
    return out


def columns(rows: list[dict]) -> dict[str, list]:
    return {k: [r.get(k, "") for r in rows] for k in rows[0]}


def fleet_rows(n_assets=3, n=12, seed=1, features=("a", "b")) -> list[dict]:
    """Interleaved string rows of several assets (as a CSV gives them)."""
    rng = np.random.default_rng(seed)
    rows = []
    for t in range(1, n + 1):
        for a in range(n_assets):
            row = {"unit": f"u{a}", "t": str(t)}
            row.update({f: repr(float(rng.normal(5, 2))) for f in features})
            rows.append(row)
    return rows
