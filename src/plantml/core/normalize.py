"""Normalization with statistics per operating condition, plus a global row.

The statistics are two ``(n_conditions + 1, n_features)`` float64 tables,
``offset`` and ``scale``; the last row holds the global statistics. A row uses
its condition's row when ``per_condition`` and the condition is known (code in
``0..n_conditions-1``), else the global row (unseen conditions, code -1).
"""

from __future__ import annotations

import numpy as np


def statistics_rows(codes: np.ndarray, n_conditions: int, per_condition: bool) -> np.ndarray:
    """Row of the statistics tables each data row uses, (n,) int64."""
    codes = np.asarray(codes, dtype=np.int64)
    if not per_condition:
        return np.full(codes.shape, n_conditions, dtype=np.int64)
    return np.where((codes >= 0) & (codes < n_conditions), codes, n_conditions)


def normalize(
    x: np.ndarray, codes: np.ndarray, offset: np.ndarray, scale: np.ndarray, per_condition: bool
) -> np.ndarray:
    """``(x - offset[c]) / scale[c]`` computed in float64, returned as float32; (n, C) -> (n, C).

    ``codes`` (n,) are the rows' operating-condition codes (-1: unseen).
    """
    idx = statistics_rows(codes, offset.shape[0] - 1, per_condition)
    return ((np.asarray(x, dtype=np.float64) - offset[idx]) / scale[idx]).astype(np.float32)
