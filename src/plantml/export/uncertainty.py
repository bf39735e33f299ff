"""The export step that puts calibrated uncertainty into a bundle.

- RUL: split-conformal half-widths fitted on the validation windows with the bundle's
  own (final variant's) predictions, written to the manifest as ``task.interval``
  (:func:`plantml.evaluation.conformal.interval_manifest`); the device turns them into
  ``rul_low`` / ``rul_high`` with :mod:`plantml.core.intervals`. The graph is unchanged.
- Failure: temperature / Platt scaling fitted on the final variant's validation
  probabilities and **folded into the ONNX graph** (:func:`append_scaling`): the graph's
  output is the calibrated probability, so every consumer (``plantml-edge``, the agent,
  a third-party runtime) reads calibrated probabilities without knowing about
  calibration, and the alarm threshold is mapped through the same monotone function
  (the alarms do not change). ``task.calibration`` records what was folded in.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from plantml.evaluation.calibration import (
    EPS,
    apply_scaling,
    brier,
    expected_calibration_error,
    fit_scaling,
)
from plantml.evaluation.conformal import check_options, fit_half_widths, interval_manifest
from plantml.export.onnx import OUTPUT, compact


def append_scaling(src: str | Path, dst: str | Path, a: float, b: float) -> Path:
    """Copy the graph at ``src`` to ``dst`` with ``sigmoid(a * logit(p) + b)`` on its output.

    ``p`` (the old output ``prediction``) is clipped to ``[EPS, 1 - EPS]`` first; the new
    output keeps the name and shape. Six float nodes; no change to the rest of the graph.
    """
    model = onnx.load(str(src))
    graph = model.graph
    raw = f"{OUTPUT}_uncalibrated"
    for node in graph.node:
        node.output[:] = [raw if o == OUTPUT else o for o in node.output]
        node.input[:] = [raw if i == OUTPUT else i for i in node.input]
    consts = {
        "cal_lo": np.float32(EPS),
        "cal_hi": np.float32(1.0 - EPS),
        "cal_one": np.float32(1.0),
        "cal_a": np.float32(a),
        "cal_b": np.float32(b),
    }
    graph.initializer.extend(numpy_helper.from_array(np.array(v), k) for k, v in consts.items())
    graph.node.extend(
        [
            helper.make_node("Clip", [raw, "cal_lo", "cal_hi"], ["cal_p"]),
            helper.make_node("Sub", ["cal_one", "cal_p"], ["cal_q"]),
            helper.make_node("Div", ["cal_p", "cal_q"], ["cal_odds"]),
            helper.make_node("Log", ["cal_odds"], ["cal_logit"]),
            helper.make_node("Mul", ["cal_logit", "cal_a"], ["cal_scaled"]),
            helper.make_node("Add", ["cal_scaled", "cal_b"], ["cal_z"]),
            helper.make_node("Sigmoid", ["cal_z"], [OUTPUT]),
        ]
    )
    for out in graph.output:
        if out.name == OUTPUT and out.type.tensor_type.elem_type != TensorProto.FLOAT:
            raise ValueError("calibration expects a float32 probability output")
    onnx.checker.check_model(model)
    onnx.save(model, str(dst))
    compact(dst)
    return Path(dst)


def interval_block(
    pred: np.ndarray, y: np.ndarray, codes: np.ndarray, n_conditions: int, spec: dict
) -> dict:
    """``task.interval`` of the bundle: half-widths fitted on the variant's own predictions."""
    level, by = check_options(spec.get("level"), str(spec.get("by") or "none"))
    half_width, notes = fit_half_widths(pred, y, codes, n_conditions, level, by)
    lead = spec.get("lead_time")
    return interval_manifest(
        half_width,
        level,
        by,
        len(y),
        alarm_lead_time=None if lead is None else float(lead),
        notes=notes,
    )


def calibrate_variant(
    src: Path, pred: np.ndarray, y: np.ndarray, threshold: float, spec: dict
) -> tuple[Path, float, dict]:
    """(calibrated graph path, mapped threshold, ``task.calibration``) for a failure variant."""
    fit = fit_scaling(pred, y, str(spec["method"]))
    bins = int(spec.get("bins") or 10)
    dst = src.with_name(f"{src.stem}_calibrated.onnx")
    append_scaling(src, dst, fit["a"], fit["b"])
    after = apply_scaling(pred, fit["a"], fit["b"])
    mapped = float(apply_scaling(np.array([threshold]), fit["a"], fit["b"])[0])
    block = {
        **fit,
        "folded_into_graph": True,
        "fitted_on": "val",
        "val_ece_before": expected_calibration_error(pred, y, bins),
        "val_ece_after": expected_calibration_error(after, y, bins),
        "val_brier_before": brier(pred, y),
        "val_brier_after": brier(after, y),
        "uncalibrated_threshold": float(threshold),
    }
    return dst, mapped, block
