"""Per-row targets: remaining useful life, failure within a horizon, anomaly flag, class.

RUL is counted within an asset's *life*: a life starts at the asset's first
row or at a maintenance event and ends at the next failure or maintenance.
A life that ends in failure gives every row its time to that failure; a life
cut short by maintenance or by the end of the record is censored (RUL
unknown). "Failure within ``horizon``" is 1 when the life's failure is at
most ``horizon`` time units ahead, 0 when the record shows the asset kept
running for at least ``horizon`` more without failure, and unknown (NaN,
left out of training and scoring) otherwise.

``class`` is a multi-class label read from a plain column (``fault`` in CWRU):
the target is the integer code of the row's label in the sorted class names
(:func:`class_names`), stored as float64 like the other targets; rows whose
label is missing or not among ``classes`` get NaN.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from plantml.data.table import SensorTable
from plantml.errors import ConfigError, DataError

KINDS = ("rul", "failure", "anomaly", "class")


def life_ids(table: SensorTable) -> np.ndarray:
    """Integer id of the life each row belongs to (unique across assets)."""
    frame = table.frame
    asset = frame[table.asset_column].to_numpy()
    new_asset = np.r_[True, asset[1:] != asset[:-1]]
    starts = new_asset.copy()
    if table.maintenance_column:
        starts |= frame[table.maintenance_column].to_numpy() > 0
    if table.failure_column:
        failed = frame[table.failure_column].to_numpy() > 0
        starts[1:] |= failed[:-1] & ~new_asset[1:]  # a row after a failure starts a new life
    return np.cumsum(starts) - 1


def remaining_life(table: SensorTable) -> tuple[np.ndarray, np.ndarray]:
    """Per row: (time to this life's failure or NaN if censored, time observed until life end)."""
    frame = table.frame
    t = table.durations(frame[table.time_column])
    life = life_ids(table)
    end_time = pd.Series(t).groupby(life).transform("max").to_numpy()
    observed = end_time - t
    if table.rul_column:
        return frame[table.rul_column].to_numpy(np.float64), observed
    rul = np.full(len(frame), np.nan)
    if table.failure_column:
        failed = frame[table.failure_column].to_numpy() > 0
        fail_time = pd.Series(np.where(failed, t, np.nan)).groupby(life).transform("max").to_numpy()
        known = ~np.isnan(fail_time) & (t <= fail_time)
        rul[known] = fail_time[known] - t[known]
    return rul, observed


def class_names(table: SensorTable, label_column: str = "fault") -> list[str]:
    """Sorted class names (as text) of ``label_column``; code ``i`` is ``class_names[i]``."""
    if label_column not in table.frame.columns:
        raise DataError(
            f"class label column {label_column!r} not found in {table.name}; set "
            f"data.target.label_column to one of: {', '.join(map(str, table.frame.columns))}"
        )
    return sorted({str(v) for v in table.frame[label_column].dropna().unique()})


def class_targets(
    table: SensorTable, label_column: str = "fault", classes: list | None = None
) -> np.ndarray:
    """Integer class code per row (float64; NaN where the label is missing or unlisted)."""
    present = class_names(table, label_column)  # also checks the column exists
    names = [str(c) for c in classes] if classes else present
    if len(set(names)) != len(names):
        raise ConfigError(f"data.target.classes lists a class twice: {names}")
    code_of = {name: float(i) for i, name in enumerate(names)}
    labels = table.frame[label_column]
    lookup = {v: code_of.get(str(v), np.nan) for v in labels.dropna().unique()}
    return labels.map(lookup).to_numpy(np.float64)


def row_targets(
    table: SensorTable,
    kind: str,
    horizon: float | None = None,
    rul_cap: float | None = None,
    label_column: str = "fault",
    classes: list | None = None,
) -> np.ndarray:
    """Target per row (float64, NaN where unknown) for ``kind`` in rul / failure / anomaly / class.

    ``label_column`` and ``classes`` are for ``kind="class"`` only (see :func:`class_targets`).
    """
    if kind not in KINDS:
        raise ConfigError(f"unknown data.target.kind {kind!r}; use one of {', '.join(KINDS)}")
    if kind == "class":
        return class_targets(table, label_column, classes)
    if kind == "anomaly":
        if not table.anomaly_column:  # unlabelled: the pipeline decides what counts as normal
            return np.full(len(table.frame), np.nan)
        return table.frame[table.anomaly_column].to_numpy(np.float64)
    if not (table.failure_column or table.rul_column):
        raise DataError(
            f"{table.name} has neither a failure event column nor a RUL column, so there is "
            f"nothing to learn for target '{kind}'; set data.label_column (and data.label_kind)"
        )
    rul, observed = remaining_life(table)
    if kind == "rul":
        if rul_cap is not None:
            rul = np.minimum(rul, float(rul_cap))
        return rul
    if horizon is None or horizon <= 0:
        raise ConfigError(f"data.target.horizon must be a positive duration, got {horizon}")
    label = np.full(len(rul), np.nan)
    label[observed >= horizon] = 0.0
    label[rul <= horizon] = 1.0
    return label
