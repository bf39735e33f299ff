"""The reference profile of an export: training rows, validation outputs, held-out rows.

:func:`export_profile` pulls the arrays out of the run's prepared data and the
final variant's predictions and hands them to
:func:`plantml.monitoring.reference.build_profile`; the bundle then carries
the result as ``reference_profile.json``. Conditions (and cluster distances)
are assigned the way the device assigns them
(:class:`plantml.core.conditions.ConditionRule`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from plantml.core.conditions import ConditionRule
from plantml.data.pipeline import PreparedData
from plantml.monitoring.profile import ReferenceProfile
from plantml.monitoring.reference import HeldOut, Outputs, build_profile


def split_rows(data: PreparedData, split: str) -> np.ndarray:
    """Rows (bool mask over ``data.frame``) inside at least one window of ``split``."""
    index = data.windows.get(split)
    mark = np.zeros(len(data.frame) + 1, dtype=np.int64)
    if index is not None and len(index):
        starts = np.maximum(index.ends - data.window_length + 1, 0)
        np.add.at(mark, starts, 1)
        np.add.at(mark, index.ends + 1, -1)
    return np.cumsum(mark)[:-1] > 0


def condition_codes(data: PreparedData) -> tuple[np.ndarray, np.ndarray | None]:
    """Condition code per row (n,) and, for cluster conditions, the distance to the centroid."""
    assigner = ConditionRule(data.conditions.state())
    frame = data.frame
    if assigner.mode == "cluster":
        return assigner.nearest(frame[assigner.settings].to_numpy(np.float64))
    return data.conditions.assign(data.table), None


def run_ids(data: PreparedData) -> np.ndarray:
    """Run id per row (n,): rows of one asset and segment share one (rows are ordered so)."""
    table = data.table
    keys = [data.frame[table.asset_column].astype(str).to_numpy()]
    if table.segment_column:
        keys.append(data.frame[table.segment_column].astype(str).to_numpy())
    change = np.zeros(len(data.frame), dtype=bool)
    for key in keys:
        change[1:] |= key[1:] != key[:-1]
    return np.cumsum(change)


def monitoring_arrays(data: PreparedData) -> dict[str, Any]:
    """Raw features (n, C), condition codes and distances, run ids and split masks (n,) of a
    prepared run: what the reference profile, its null model and replays are built from."""
    codes, distance = condition_codes(data)
    return {
        "x": data.frame[data.feature_names].to_numpy(np.float64),
        "codes": codes,
        "distance": distance,
        "runs": run_ids(data),
        **{split: split_rows(data, split) for split in ("train", "val", "test")},
    }


def _alarms(pred: np.ndarray, threshold: float | None, alarm_when: str | None) -> np.ndarray | None:
    if threshold is None or alarm_when is None:
        return None
    return (pred <= threshold if alarm_when == "below" else pred >= threshold).astype(np.int8)


def export_profile(
    data: PreparedData,
    windows: Any,
    predictions: np.ndarray,
    kind: str,
    threshold: float | None,
    output_name: str,
    class_names: list[str] | None = None,
    options: dict[str, Any] | None = None,
) -> ReferenceProfile:
    """The reference profile of an exported model.

    Args:
        data: the run's prepared data (raw values in ``data.frame``).
        windows: the scored windows (:class:`plantml.export.verify.EvalWindows`):
            their conditions and targets, aligned with ``predictions``.
        predictions: the bundle's outputs on those windows, (m,) or (m, K) class
            probabilities.
        kind, threshold, output_name, class_names: the bundle's task.
        options: ``bins``, ``variance`` and ``null`` (keyword arguments of
            :func:`plantml.monitoring.null.fit_null`).
    """
    options = dict(options or {})
    arrays = monitoring_arrays(data)
    x, codes, distance, train = arrays["x"], arrays["codes"], arrays["distance"], arrays["train"]
    pred = np.asarray(predictions)
    if pred.ndim == 2:  # class probabilities -> predicted class index
        pred = pred.argmax(1)
    alarm_when = {"failure": "above", "anomaly": "above", "rul": "below"}.get(kind)
    outputs = Outputs(
        kind=kind,
        name=output_name,
        predictions=pred.astype(np.float64),
        codes=np.asarray(windows.conditions),
        alarms=_alarms(pred, threshold, alarm_when) if kind != "class" else None,
        labels=np.asarray(windows.y) if kind == "failure" else None,
        threshold=threshold,
        alarm_when=alarm_when if threshold is not None else None,
        classes=class_names,
        split=windows.split,
    )
    held = arrays["val"]
    held_out = None
    if held.any():
        held_out = HeldOut(
            x=x[held],
            codes=codes[held],
            runs=arrays["runs"][held],
            distance=None if distance is None else distance[held],
            split="val",
        )
    return build_profile(
        list(data.feature_names),
        list(data.condition_names),
        x[train],
        codes[train],
        distance=None if distance is None else distance[train],
        outputs=outputs,
        held_out=held_out,
        bins=int(options.get("bins", 20)),
        variance=float(options.get("variance", 0.9)),
        null_options=options.get("null"),
        source={"split": "train", "held_out_split": "val" if held_out else None},
    )
