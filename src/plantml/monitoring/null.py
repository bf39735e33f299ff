"""How much the drift statistic moves when nothing drifts: the calibrated null model.

Raw drift statistics are not comparable across features, conditions and chunk
sizes, and naive p-values (KS with independent rows) are far too small on
autocorrelated sensor data: every chunk would be "significant". So at export,
:func:`fit_null` replays held-out in-control data (the validation split:
assets the reference never saw) as production chunks of several sizes, each
chunk built from contiguous blocks of rows of random assets (as a fleet sends
them), and records the normalized Wasserstein distance of each block and
signal. ``log(W + offset)`` is close to normal at a given size; its mean and
std are kept per block, signal and size. :func:`null_scores` turns a chunk's
distances into z-scores under that null, interpolating in log rows.
Numpy only.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from plantml.monitoring.drift import input_drift
from plantml.monitoring.profile import ReferenceProfile
from plantml.monitoring.sketch import ProfileSketch

OFFSET = 0.01  # W in reference stds; keeps log finite for signals constant in the reference
SD_FLOOR = 0.1
MIN_ROWS = 8  # fewer rows of a block in a chunk: not tested


def draw_chunk(
    rng: np.random.Generator, run_starts: np.ndarray, run_lengths: np.ndarray, rows: int, block: int
) -> np.ndarray:
    """Row indices of one simulated chunk: contiguous ``block``-row pieces of random runs."""
    picked: list[np.ndarray] = []
    total = 0
    while total < rows:
        r = int(rng.integers(len(run_starts)))
        take = int(min(block, run_lengths[r], rows - total))
        start = run_starts[r] + int(rng.integers(run_lengths[r] - take + 1))
        picked.append(np.arange(start, start + take))
        total += take
    return np.concatenate(picked)


def fit_null(
    profile: ReferenceProfile,
    x: np.ndarray,
    codes: np.ndarray,
    runs: np.ndarray,
    sizes: tuple[int, ...] = (128, 512, 2048, 8192),
    chunks: int = 100,
    block_rows: int = 25,
    distance: np.ndarray | None = None,
    seed: int = 0,
    split: str = "val",
) -> dict[str, Any]:
    """The null model of the normalized Wasserstein distance, from in-control rows.

    Args:
        profile: the reference profile (bins and PCA from the training split).
        x: held-out in-control rows (n, C), raw, ordered by run then time.
        codes: their condition codes (n,); distance: cluster distances (n,) or None.
        runs: run id per row (n,): rows of one asset (and segment) share it.
        sizes: chunk sizes in rows to simulate.
        chunks: chunks simulated per size.
        block_rows: rows taken from one run at a time (an asset's rows in one chunk).

    Returns:
        The profile's ``null`` block: ``sizes`` (G,), ``rows`` (K+1, G) median rows
        per block, ``mu`` and ``sd`` (K+1, S, G) of ``log(W + offset)``.
    """
    runs = np.asarray(runs)
    starts = np.flatnonzero(np.r_[True, runs[1:] != runs[:-1]])
    lengths = np.diff(np.r_[starts, len(runs)])
    rng = np.random.default_rng(seed)
    k1, s = profile.n_conditions + 1, len(profile.signals)
    keep = np.r_[np.arange(k1 - 1), k1]  # sketch blocks: conditions and "all" (not unseen)
    mu = np.full((k1, s, len(sizes)), np.nan)
    sd = np.full((k1, s, len(sizes)), np.nan)
    rows = np.full((k1, len(sizes)), np.nan)
    sketch = ProfileSketch(profile)
    for g, size in enumerate(sizes):
        logs = np.full((chunks, k1, s), np.nan)
        n_rows = np.zeros((chunks, k1))
        for c in range(chunks):
            idx = draw_chunk(rng, starts, lengths, int(size), block_rows)
            sketch.reset()
            sketch.update(x[idx], codes[idx], distance=None if distance is None else distance[idx])
            w = input_drift(profile, sketch)["wasserstein"][keep]
            n = sketch.moments.n[keep]
            logs[c] = np.where(n >= MIN_ROWS, np.log(w + OFFSET), np.nan)
            n_rows[c] = sketch.rows[keep]
        enough = np.isfinite(logs).sum(0) >= max(5, chunks // 4)
        with np.errstate(invalid="ignore"):
            mu[..., g] = np.where(enough, np.nanmean(logs, 0), np.nan)
            sd[..., g] = np.where(enough, np.maximum(np.nanstd(logs, 0), SD_FLOOR), np.nan)
        rows[:, g] = np.median(n_rows, 0)
    return {
        "statistic": "wasserstein",
        "offset": OFFSET,
        "sizes": np.asarray(sizes, dtype=np.float64),
        "rows": rows,
        "mu": mu,
        "sd": sd,
        "chunks": int(chunks),
        "block_rows": int(block_rows),
        "split": split,
    }


def _interp(log_n: float, grid: np.ndarray, values: np.ndarray) -> float:
    ok = np.isfinite(grid) & np.isfinite(values)
    if not ok.any():
        return float("nan")
    return float(np.interp(log_n, grid[ok], values[ok]))


def null_scores(profile: ReferenceProfile, wasserstein: np.ndarray, n: np.ndarray) -> np.ndarray:
    """z-scores (K+2, S) of a chunk's normalized Wasserstein distances under the null.

    ``wasserstein`` and ``n`` (non-missing rows) are (K+2, S) as in
    :class:`~plantml.monitoring.drift.ChunkDrift`. The unseen block, blocks
    with fewer than ``MIN_ROWS`` rows, and cells the null could not calibrate
    are NaN (not tested). Needs a profile with a ``null`` block.
    """
    null = profile.null
    if null is None:
        raise ValueError("the reference profile has no null model; re-export the bundle")
    k = profile.n_conditions
    z = np.full(np.shape(wasserstein), np.nan)
    for b in [*range(k), k + 1]:
        nb = b if b < k else k
        log_grid = np.log(np.maximum(null["rows"][nb], 1.0))
        for j in range(z.shape[1]):
            if n[b, j] < MIN_ROWS or not np.isfinite(wasserstein[b, j]):
                continue
            log_n = float(np.log(n[b, j]))
            mu = _interp(log_n, log_grid, null["mu"][nb, j])
            sd = _interp(log_n, log_grid, null["sd"][nb, j])
            z[b, j] = (np.log(wasserstein[b, j] + null["offset"]) - mu) / sd
    return z
