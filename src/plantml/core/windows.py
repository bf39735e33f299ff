"""Which rows end a window, and the windows themselves (never materialized).

Rows are grouped into *runs*: contiguous rows of one asset with no restart
between them (training also starts a run at a cleaning segment or a split
boundary; the device restarts an asset's run after a step longer than
``max_gap``). A window of ``length`` rows ends at a row once the run holds
``length`` rows up to it.

The stride convention (training and device alike): windows are counted
forward from each run's start; the k-th complete window of a run (k = 0, 1,
...) is kept when ``k % stride == 0``. So the first complete window of every
run is always kept, and a streaming device, which cannot know where a run
will end, keeps exactly the windows training kept.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from plantml.errors import ConfigError


def run_starts(*keys: np.ndarray) -> np.ndarray:
    """For each row, the index of the first row of its run of equal ``keys``, (n,) int64.

    Rows must already be grouped (sorted) so that each run is contiguous.
    """
    n = len(keys[0])
    change = np.zeros(n, dtype=bool)
    if n:
        change[0] = True
    for key in keys:
        change[1:] |= key[1:] != key[:-1]
    return np.maximum.accumulate(np.where(change, np.arange(n), 0)) if n else np.zeros(0, np.int64)


def gap_restarts(times: np.ndarray, max_gap: float | None) -> np.ndarray:
    """Rows (of one asset, in time order) that restart the run: the first, and after a gap.

    A step ``times[i] - times[i-1] > max_gap`` restarts; ``max_gap`` None never does.
    Returns (n,) bool.
    """
    restart = np.zeros(len(times), dtype=bool)
    restart[:1] = True
    if max_gap is not None and len(times) > 1:
        restart[1:] = np.diff(times) > max_gap
    return restart


def window_ends(run_start: np.ndarray, length: int, stride: int = 1) -> np.ndarray:
    """Rows that end a kept window of ``length`` rows inside one run, (windows,) int64.

    ``run_start`` (n,) is each row's run start (:func:`run_starts`); the k-th
    complete window of a run is kept when ``k % stride == 0`` (see the module doc).
    """
    if length < 1 or stride < 1:
        raise ConfigError(f"data.window.length and stride must be >= 1, got {length} and {stride}")
    rows = np.arange(len(run_start))
    k = rows - run_start - (length - 1)  # index of the complete window ending at each row
    return rows[(k >= 0) & (k % stride == 0)]


def window_due(rows_since_restart: int, length: int, stride: int) -> bool:
    """Streaming form of :func:`window_ends`: does the row just added end a kept window?"""
    k = rows_since_restart - length
    return k >= 0 and k % stride == 0


def gather_windows(
    features: np.ndarray, ends: np.ndarray, length: int, starts: np.ndarray | None = None
) -> np.ndarray:
    """Windows ending at rows ``ends`` as one (batch, length, channels) array (a copy).

    ``features`` is (rows, channels). With ``starts`` (batch,), rows before a
    window's start repeat the start row (edge padding of short histories).
    """
    ends = np.asarray(ends, dtype=np.int64)
    channels = features.shape[1]
    if starts is not None:
        rows = ends[:, None] + np.arange(-length + 1, 1)
        return features[np.maximum(rows, np.asarray(starts)[:, None])]
    if len(features) < length:
        if len(ends):
            raise ValueError(f"windows of {length} rows asked of a table of {len(features)} rows")
        return np.empty((0, length, channels), dtype=features.dtype)
    view = sliding_window_view(features, (length, channels))[:, 0]
    return view[ends - length + 1]
