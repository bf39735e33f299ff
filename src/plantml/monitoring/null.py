"""How much the drift statistic moves when nothing drifts: the calibrated null model.

Raw drift statistics are not comparable across features, conditions and chunk
sizes, and naive p-values (KS with independent rows) are far too small on
sensor data: rows are autocorrelated and assets differ, so every chunk would
be "significant". So at export, :func:`fit_null` replays held-out in-control
data (the validation split: assets the reference never saw) as production
chunks of several sizes and records the normalized Wasserstein distance of
each block (condition, all rows) and signal:

- **marginal**: ``log(W + offset)`` is close to normal at a given chunk size;
  its mean and std per block, signal and size give the chunk z-score
  (:func:`null_scores`, interpolated in log rows).
- **persistence**: production chunks are consecutive and share assets (an
  asset near the end of its life stays atypical for several chunks), so
  z-scores of consecutive chunks are correlated and a CUSUM over them climbs
  higher than over independent ones. The chunks are simulated as a fleet in
  steady state, in sequences, and a ``scale`` per block and size is fitted so
  that the CUSUM excursions of the in-control sequences, with z divided by it,
  are no more frequent than those of independent standard normal increments
  (at tail probabilities 0.1, 0.03 and 0.01). The sequential tests divide z
  by it (``whiten``).

Numpy only (the CUSUM law is imported from :mod:`plantml.monitoring.sequential`
only when fitting, at export).
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
SCALE_K = 0.5  # CUSUM allowance the scale is fitted for (the rules' default k)
SCALE_TAILS = (0.1, 0.03, 0.01)
SCALE_GRID = np.arange(1.0, 3.001, 0.05)


def fit_null(
    profile: ReferenceProfile,
    x: np.ndarray,
    codes: np.ndarray,
    runs: np.ndarray,
    sizes: tuple[int, ...] = (128, 512, 2048, 8192),
    chunks: int = 200,
    block_rows: int = 20,
    distance: np.ndarray | None = None,
    seed: int = 0,
    split: str = "val",
    sequence: int = 25,
    subset: float = 0.5,
) -> dict[str, Any]:
    """The null model of the normalized Wasserstein distance, from in-control rows.

    Chunks are simulated as a fleet in steady state
    (:func:`plantml.monitoring.scenarios.fleet_chunks`): ``size / block_rows``
    assets at a time, each giving ``block_rows`` consecutive rows to every
    chunk and staying until its life ends, in sequences of ``sequence`` chunks,
    each sequence drawing its fleet, with replacement, from ``subset`` times as
    many runs as were held out (a fresh fleet is another sample of assets).

    Args:
        profile: the reference profile (bins and PCA from the training split).
        x: held-out in-control rows (n, C), raw, ordered by run then time.
        codes: their condition codes (n,); distance: cluster distances (n,) or None.
        runs: run id per row (n,): rows of one asset (and segment) share it.
        sizes: chunk sizes in rows to simulate.
        chunks: chunks simulated per size.
        block_rows: rows one asset gives to one chunk.

    Returns:
        The profile's ``null`` block: ``sizes`` (G,), ``rows`` (K+1, G) median rows
        per block, ``mu`` and ``sd`` (K+1, S, G) of ``log(W + offset)``, ``scale`` (K+1, G).
    """
    from plantml.monitoring.scenarios import Pool, fleet_chunks

    x, codes, runs = np.asarray(x), np.asarray(codes), np.asarray(runs)
    run_ids = np.unique(runs)
    rng = np.random.default_rng(seed)
    k1, s = profile.n_conditions + 1, len(profile.signals)
    keep = np.r_[np.arange(k1 - 1), k1]  # sketch blocks: conditions and "all" (not unseen)
    n_seq = max(2, int(np.ceil(chunks / sequence)))
    mu = np.full((k1, s, len(sizes)), np.nan)
    sd = np.full((k1, s, len(sizes)), np.nan)
    scale = np.ones((k1, len(sizes)))
    rows = np.full((k1, len(sizes)), np.nan)
    sketch = ProfileSketch(profile)
    for g, size in enumerate(sizes):
        active = max(1, round(int(size) / block_rows))
        logs = np.full((n_seq, sequence, k1, s), np.nan)
        n_rows = np.zeros((n_seq, sequence, k1))
        for q in range(n_seq):
            chosen, relabel = _bootstrap_fleet(runs, run_ids, subset, rng)
            pool = Pool(x[chosen], codes[chosen], relabel)
            for c, idx in enumerate(fleet_chunks(pool, rng, sequence, active, block_rows)):
                rows_idx = chosen[idx]
                sketch.reset()
                sketch.update(
                    x[rows_idx],
                    codes[rows_idx],
                    distance=None if distance is None else distance[rows_idx],
                )
                w = input_drift(profile, sketch)["wasserstein"][keep]
                n = sketch.moments.n[keep]
                logs[q, c] = np.where(n >= MIN_ROWS, np.log(w + OFFSET), np.nan)
                n_rows[q, c] = sketch.rows[keep]
        flat = logs.reshape(-1, k1, s)
        enough = np.isfinite(flat).sum(0) >= max(5, len(flat) // 4)
        with np.errstate(invalid="ignore"):
            mu[..., g] = np.where(enough, np.nanmean(flat, 0), np.nan)
            sd[..., g] = np.where(enough, np.maximum(np.nanstd(flat, 0), SD_FLOOR), np.nan)
        z = (logs - mu[..., g]) / sd[..., g]
        scale[:-1, g] = fit_scale(z[:, :, :-1])  # pooled over the conditions
        scale[-1, g] = fit_scale(z[:, :, -1:])  # all rows pooled
        rows[:, g] = np.median(n_rows.reshape(-1, k1), 0)
    # persistence grows with the chunk size (fleet offsets dominate larger chunks): keep the
    # fitted scale non-decreasing in size, which also smooths the noise of one size's fit
    scale = np.maximum.accumulate(scale, axis=1)
    return {
        "statistic": "wasserstein",
        "offset": OFFSET,
        "sizes": np.asarray(sizes, dtype=np.float64),
        "rows": rows,
        "mu": mu,
        "sd": sd,
        "scale": scale,
        "scale_k": SCALE_K,
        "chunks": int(n_seq * sequence),
        "sequence": int(sequence),
        "block_rows": int(block_rows),
        "split": split,
    }


def _bootstrap_fleet(
    runs: np.ndarray, run_ids: np.ndarray, subset: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Rows of a fleet of ``subset * runs`` runs drawn with replacement, and a run id per row.

    Drawn with replacement, a fleet of half the held-out runs varies around the
    held-out mean as much as a production fleet of that size varies around the
    population mean plus the error of the held-out mean itself.
    """
    take = max(1, round(subset * len(run_ids)))
    rows, labels = [], []
    for label, run in enumerate(rng.choice(run_ids, take, replace=True)):
        mine = np.flatnonzero(runs == run)
        rows.append(mine)
        labels.append(np.full(len(mine), label))
    return np.concatenate(rows), np.concatenate(labels)


def _cusum_max(z: np.ndarray, k: float) -> np.ndarray:
    """Largest CUSUM level of each sequence and test: z (sequences, time, ...) -> (sequences, ...)."""
    level = np.zeros(z.shape[:1] + z.shape[2:])
    top = np.zeros_like(level)
    for t in range(z.shape[1]):
        zt = z[:, t]
        level = np.where(np.isfinite(zt), np.maximum(0.0, level + np.nan_to_num(zt) - k), level)
        top = np.maximum(top, level)
    return top


def fit_scale(z: np.ndarray, k: float = SCALE_K) -> float:
    """Smallest scale c (1..3) such that CUSUMs of z / c exceed the levels an independent
    N(0, 1) CUSUM reaches with probability 0.1, 0.03 and 0.01 over the same number of
    chunks at most that often (the tails with at least 3 expected exceedances among the
    tested sequences). z: (sequences, time, tests...), NaN = not tested."""
    from plantml.monitoring.sequential import horizon_pvalue

    steps = z.shape[1]
    with np.errstate(invalid="ignore"):
        moving = np.nanstd(z, axis=1) > 1e-9  # constant signals (always z = 0) say nothing
    tested = np.isfinite(z).all(axis=1) & moving
    tails = [p for p in SCALE_TAILS if p * tested.sum() >= 3]  # tails the sample can judge
    if not tails:
        return 1.0
    grid = np.linspace(0.2, 25.0, 500)
    model = horizon_pvalue(grid, k, steps)
    levels = [grid[np.argmin(np.abs(model - p))] for p in tails]
    for c in SCALE_GRID:
        top = _cusum_max(z / c, k)[tested]
        if all((top >= h).mean() <= p for h, p in zip(levels, tails, strict=True)):
            return float(c)
    return float(SCALE_GRID[-1])


def _interp(log_n: float, grid: np.ndarray, values: np.ndarray, below: float = 0.0) -> float:
    """``values`` at ``log_n`` on the log-rows ``grid``, linear inside, flat above; below the
    smallest size, ``values`` grow by ``below`` per unit of log rows fewer."""
    ok = np.isfinite(grid) & np.isfinite(values)
    if not ok.any():
        return float("nan")
    value = float(np.interp(log_n, grid[ok], values[ok]))
    first = float(grid[ok].min())
    return value + below * max(first - log_n, 0.0)


def null_scores(
    profile: ReferenceProfile, wasserstein: np.ndarray, n: np.ndarray, whiten: bool = False
) -> np.ndarray:
    """z-scores (K+2, S) of a chunk's normalized Wasserstein distances under the null.

    ``wasserstein`` and ``n`` (non-missing rows) are (K+2, S) as in
    :class:`~plantml.monitoring.drift.ChunkDrift`. The unseen block, blocks
    with fewer than ``MIN_ROWS`` rows, and cells the null could not calibrate
    are NaN (not tested). ``whiten`` divides by the fitted persistence
    ``scale``, for sequential tests. Needs a profile with a ``null`` block.
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
            # fewer rows than simulated: sampling noise dominates, W ~ rows ** -0.5
            mu = _interp(log_n, log_grid, null["mu"][nb, j], below=0.5)
            sd = _interp(log_n, log_grid, null["sd"][nb, j])
            z[b, j] = (np.log(wasserstein[b, j] + null["offset"]) - mu) / sd
            if whiten:
                z[b, j] /= max(_interp(log_n, log_grid, null["scale"][nb]), 1.0)
    return z
