"""The range of values training accepted for a column, applied the same way on both sides.

A bound is ``[low, high]``, either end None (open). Training's ``sanity`` and
``clip`` cleaning steps fit and apply them (:mod:`plantml.data.sanity`); an edge
bundle stores them (``input.valid_range``) and the device applies them to its rows.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

Bound = Sequence[float | None]


def outside(values: np.ndarray, bound: Bound) -> np.ndarray:
    """Mask (n,) of ``values`` below ``bound[0]`` or above ``bound[1]`` (NaN is never outside)."""
    low, high = bound
    values = np.asarray(values, dtype=np.float64)
    out = np.zeros(values.shape, dtype=bool)
    with np.errstate(invalid="ignore"):
        if low is not None:
            out |= values < low
        if high is not None:
            out |= values > high
    return out


def clamp(values: np.ndarray, bound: Bound) -> np.ndarray:
    """``values`` (float64) clamped into ``bound``."""
    low, high = bound
    return np.clip(
        np.asarray(values, dtype=np.float64),
        -np.inf if low is None else low,
        np.inf if high is None else high,
    )


def intersect(a: Bound | None, b: Bound | None) -> list[float | None]:
    """The narrower of two bounds (None: no bound)."""
    if a is None:
        return list(b) if b is not None else [None, None]
    if b is None:
        return list(a)
    lows = [v for v in (a[0], b[0]) if v is not None]
    highs = [v for v in (a[1], b[1]) if v is not None]
    return [max(lows) if lows else None, min(highs) if highs else None]


def describe(value: float, column: str, bound: Bound) -> str:
    """Why a value outside the training range is rejected, with the fix."""
    low, high = bound
    shown = (
        f"[{'-inf' if low is None else f'{low:.6g}'}, {'inf' if high is None else f'{high:.6g}'}]"
    )
    return (
        f"value {value:.6g} is outside the range training accepted for {column!r} {shown} "
        "(a corrupt reading or a sentinel?); fix the sensor value or drop the row"
    )
