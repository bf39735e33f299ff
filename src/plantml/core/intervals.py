"""RUL prediction intervals from conformal half-widths, per operating condition.

The manifest (``task.interval``) and the training side's evaluation both hold the
half-widths as a list of ``n_conditions + 1`` numbers, the last one global, like the
normalization statistics: a window uses its condition's entry when the interval is
``by: condition`` (Mondrian conformal) and the condition is known, else the global one.
The interval of a prediction ``p`` is ``[max(p - q, floor), p + q]`` (RUL is never below 0).
"""

from __future__ import annotations

import numpy as np

from plantml.core.normalize import statistics_rows


def interval_bounds(
    pred: np.ndarray,
    codes: np.ndarray,
    half_width: np.ndarray,
    per_condition: bool,
    floor: float | None = 0.0,
) -> tuple[np.ndarray, np.ndarray]:
    """(low, high) float32 ``(n,)`` for predictions ``pred`` ``(n,)`` with condition ``codes``.

    ``half_width`` is ``(n_conditions + 1,)`` (last entry global); ``floor`` clips the
    lower bound (None: no clip).
    """
    half_width = np.asarray(half_width, dtype=np.float64)
    idx = statistics_rows(codes, len(half_width) - 1, per_condition)
    pred = np.asarray(pred, dtype=np.float64)
    low = pred - half_width[idx]
    if floor is not None:
        low = np.maximum(low, float(floor))
    return low.astype(np.float32), (pred + half_width[idx]).astype(np.float32)
