"""Sanity bounds: a reading far outside a sensor's robust training range is corrupt, not data.

One value of 1e30 (a logger's overflow) or 9999 (a sentinel) in a sensor destroys
that sensor's scaling: its mean and standard deviation follow the one value and
every real reading collapses to about the same number. The ``sanity`` cleaning
step flags such values before anything is fitted.

Per column, fitted on the rows of the training split::

    s = q75 - q25                 # the interquartile range
    s = q99.9 - q0.1              # if the IQR is 0 (a mostly constant or two-valued sensor)
    s = max(|median|, 1)          # if that is 0 too (constant in training)
    bounds = [q25 - multiple * s, q75 + multiple * s]

With the default ``multiple`` of 50 a normally distributed sensor is flagged
beyond about 68 standard deviations; the largest excursion on the shipped
datasets is 33 IQRs (raw CWRU accelerometer, impulsive by nature), the synthetic
fleet's failures reach 8. Values outside become NaN (``action: nan``, then filled
or dropped like any gap) or are clamped to the bound (``clip``). The bounds go
into the edge bundle's manifest, and the device applies them to its rows too.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from plantml.core.valid_range import outside
from plantml.errors import ConfigError

Bounds = dict[str, list[float | None]]


def fit_bounds(
    frame: pd.DataFrame, columns: Sequence[str], rows: np.ndarray, multiple: float
) -> Bounds:
    """``{column: [low, high]}`` from the rows where ``rows`` (bool, (n,)) is True.

    Columns with no finite value in those rows get no bounds.
    """
    if not (isinstance(multiple, int | float) and multiple > 0):
        raise ConfigError(f"data.cleaning.sanity.multiple must be a number > 0, got {multiple!r}")
    bounds: Bounds = {}
    for col in columns:
        x = frame[col].to_numpy(dtype=np.float64, na_value=np.nan)[rows]
        x = x[np.isfinite(x)]
        if not len(x):
            continue
        q001, q25, q50, q75, q999 = np.percentile(x, [0.1, 25, 50, 75, 99.9])
        spread = q75 - q25
        if spread <= 0:
            spread = q999 - q001
        if spread <= 0:
            spread = max(abs(q50), 1.0)
        bounds[col] = [float(q25 - multiple * spread), float(q75 + multiple * spread)]
    return bounds


def apply_bounds(
    frame: pd.DataFrame, bounds: Mapping[str, Sequence[float | None]], action: str
) -> tuple[pd.DataFrame, dict[str, int]]:
    """Values outside ``bounds`` become NaN (``nan``) or the bound (``clip``); counts per column."""
    counts: dict[str, int] = {}
    for col, bound in bounds.items():
        if col not in frame.columns:
            continue
        values = frame[col].to_numpy(dtype=np.float64, na_value=np.nan)
        out = outside(values, bound)
        counts[col] = int(out.sum())
        if counts[col]:
            s = frame[col]
            frame[col] = s.mask(out) if action == "nan" else s.clip(bound[0], bound[1])
    return frame, counts
