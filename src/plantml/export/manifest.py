"""The data side of an edge bundle's manifest, taken from the fitted training pipeline.

:func:`input_manifest` gives the ``input``, ``normalization`` and ``conditions``
blocks of ``manifest.json`` (format in :mod:`plantml.edge.bundle`): which columns
a device must send, how often, and the statistics that turn them into the
normalized windows the model was trained on. No torch here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from plantml.core.valid_range import intersect
from plantml.data.alignment import ticks
from plantml.data.cleaning import resolve_config
from plantml.data.pipeline import PreparedData
from plantml.errors import ConfigError

GAP_FACTOR = 1.5  # margin over the largest step a training window held


def _steps(data: PreparedData, datetime_time: bool) -> np.ndarray:
    """Steps between consecutive rows of one run (asset and segment; seconds for timestamps).

    These are the steps training windows were cut across: a segment break
    (rows cleaning could not fill) is not one.
    """
    frame, table = data.frame, data.table
    t = ticks(frame[table.time_column]).astype(np.float64)
    if datetime_time:
        t = t / 1e9
    same = frame[table.asset_column].to_numpy()[1:] == frame[table.asset_column].to_numpy()[:-1]
    if table.segment_column:
        segment = frame[table.segment_column].to_numpy()
        same &= segment[1:] == segment[:-1]
    steps = np.diff(t)[same]
    return steps[steps > 0]


def _median_step(data: PreparedData, datetime_time: bool) -> float | None:
    """Median step between consecutive rows of one run."""
    steps = _steps(data, datetime_time)
    return float(np.median(steps)) if len(steps) else None


def max_gap(data: PreparedData, period: float | None) -> float | None:
    """The step that restarts a window on the device: 1.5 x the largest step inside training runs.

    On a regular grid (``align``) that is 1.5 periods: a missing row restarts the
    window, as a segment break did in training. On data logged with jitter
    (SKAB: 1 s rows with 2 s steps) the windows the model learned from held
    such steps, so the device keeps them too.
    """
    datetime_time = pd.api.types.is_datetime64_any_dtype(data.frame[data.table.time_column])
    steps = _steps(data, datetime_time)
    largest = float(steps.max()) if len(steps) else period
    if largest is None:
        return None
    return GAP_FACTOR * max(largest, period or 0.0)


def sampling_period(data: PreparedData, cleaning: Mapping | None) -> float | None:
    """Time between rows the model expects: the ``align`` period, else the median step.

    Seconds for timestamp time columns, time units (cycles) for numeric ones.
    """
    datetime_time = pd.api.types.is_datetime64_any_dtype(data.frame[data.table.time_column])
    align = resolve_config(cleaning)["align"]
    if align["enabled"] and align["period"] is not None:
        period = align["period"]
        if datetime_time:
            try:
                return float(pd.Timedelta(period).total_seconds())
            except (ValueError, TypeError):
                raise ConfigError(
                    f"data.cleaning.align.period={period!r} is not a duration; use e.g. '1h'"
                ) from None
        return float(period)
    return _median_step(data, datetime_time)


def valid_range(data: PreparedData, cleaning: Mapping | None) -> dict[str, Any] | None:
    """The ``input.valid_range`` block: per feature, the range training accepted, and the action.

    The range is the ``sanity`` step's bounds (fitted on the training split)
    narrowed by the physical ``clip.bounds``; the action is the sanity step's
    (``nan``: the device rejects the row, ``clip``: it clamps the value), or
    clip's when only clip ran. None when neither step set a bound.
    """
    cfg = resolve_config(cleaning)
    sanity = data.cleaning.get("sanity", {}).get("bounds") or {}
    physical = (cfg["clip"]["bounds"] or {}) if cfg["clip"]["enabled"] else {}
    bounds = {}
    for col in data.feature_names:
        if col in sanity or col in physical:
            bounds[col] = intersect(sanity.get(col), physical.get(col))
    if not bounds:
        return None
    action = cfg["sanity"]["action"] if sanity else cfg["clip"]["action"]
    return {"bounds": bounds, "action": action}


def input_manifest(data: PreparedData, cleaning: Mapping | None, stride: int = 1) -> dict[str, Any]:
    """The ``input``, ``normalization`` and ``conditions`` blocks of a bundle manifest.

    Args:
        data: the prepared training data (``DataPipeline.prepare()``).
        cleaning: the ``data.cleaning`` config the data was cleaned with (for
            the ``align`` period); None for the defaults.
        stride: emit a prediction every ``stride`` full windows on the device.

    Returns:
        ``{"input": ..., "normalization": ..., "conditions": ...}`` (plain JSON types).
    """
    if int(stride) < 1:
        raise ConfigError(f"the edge stride must be >= 1, got {stride}")
    table = data.table
    time_kind = (
        "datetime"
        if pd.api.types.is_datetime64_any_dtype(data.frame[table.time_column])
        else "number"
    )
    period = sampling_period(data, cleaning)
    features = list(data.feature_names)
    masks = [f for f in features if f.endswith("__missing")]
    if masks:
        raise ConfigError(
            f"the model reads missing-value mask features {masks[:3]}, which an edge device "
            "cannot send (the runtime rejects rows with missing values instead of filling "
            "them); retrain with data.cleaning.fill.mask_as_feature=false to export it"
        )
    out = {
        "input": {
            # null: the ids were made up in training (one per file): the device needs none
            "asset_column": table.asset_column if table.asset_ids_given else None,
            "time_column": table.time_column,
            "time_kind": time_kind,
            "sampling_period": period,
            "max_gap": max_gap(data, period),
            "feature_columns": features,
            "dtypes": dict.fromkeys(features, "float32"),
            "window_length": int(data.window_length),
            "stride": int(stride),
        },
        "normalization": data.scaler.state(),
        "conditions": data.conditions.state(),
    }
    accepted = valid_range(data, cleaning)
    if accepted is not None:
        out["input"]["valid_range"] = accepted
    return out
