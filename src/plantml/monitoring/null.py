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

import math
from statistics import NormalDist
from typing import Any

import numpy as np

from plantml.monitoring.drift import input_drift
from plantml.monitoring.profile import ReferenceProfile
from plantml.monitoring.sketch import ProfileSketch

OFFSET = 0.01  # W in reference stds; keeps log finite for signals constant in the reference
SD_FLOOR = 0.1
TAIL_Q = 0.9  # above this quantile of the null, the tail is fitted (exponential in log W)
NORMAL_EXCESS = 0.478  # mean excess of a standard normal above its 0.9 quantile, in sds
_NORMAL = NormalDist()
MIN_ROWS = 8  # fewer rows of a block in a chunk: not tested


def fit_null(
    profile: ReferenceProfile,
    x: np.ndarray,
    codes: np.ndarray,
    runs: np.ndarray,
    sizes: tuple[int, ...] = (128, 512, 2048, 8192),
    chunks: int = 150,
    block_rows: int = 20,
    distance: np.ndarray | None = None,
    seed: int = 0,
    split: str = "val",
    sequence: int = 25,
    subset: float = 0.5,
    max_lag: int = 12,
) -> dict[str, Any]:
    """The null model of the normalized Wasserstein distance, from in-control rows.

    Production chunks are simulated as a fleet in steady state
    (:func:`plantml.monitoring.scenarios.fleet_chunks`): ``size / block_rows``
    assets at a time, each giving ``block_rows`` consecutive rows to every
    chunk and staying until its life ends, in sequences of ``sequence`` chunks.
    Each sequence draws its assets from a random ``subset`` of the held-out
    runs: a production fleet is another sample of assets than the reference,
    and its offset persists for as long as it runs. Consecutive chunks share
    assets, so their statistics are correlated; the long-run variance factor
    ``lrv = 1 + 2 sum_l w_l rho_l`` (Bartlett weights up to ``max_lag``) of the
    z-scores, pooled over the conditions, is kept so that sequential tests
    account for it.

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
        per block, ``mu`` and ``sd`` (K+1, S, G) of ``log(W + offset)``, ``lrv`` (K+1, G).
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
    tail_u = np.full((k1, s, len(sizes)), np.nan)
    tail_beta = np.full((k1, s, len(sizes)), np.nan)
    lrv = np.ones((k1, len(sizes)))
    rows = np.full((k1, len(sizes)), np.nan)
    sketch = ProfileSketch(profile)
    for g, size in enumerate(sizes):
        active = max(1, round(int(size) / block_rows))
        logs = np.full((n_seq, sequence, k1, s), np.nan)
        n_rows = np.zeros((n_seq, sequence, k1))
        for q in range(n_seq):
            take = max(1, round(subset * len(run_ids)))
            chosen = np.flatnonzero(np.isin(runs, rng.choice(run_ids, take, replace=False)))
            pool = Pool(x[chosen], codes[chosen], runs[chosen])
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
            u = np.nanquantile(np.where(enough, flat, 0.0), TAIL_Q, axis=0)
            excess = np.where(flat > u, flat - u, np.nan)
            beta = np.nanmean(excess, 0)
            tail_u[..., g] = np.where(enough, u, np.nan)
            # an exceedance tail no lighter than the normal's: heavy tails are tempered,
            # light ones are not sharpened (few exceedances would make that a guess)
            tail_beta[..., g] = np.where(enough, np.fmax(beta, NORMAL_EXCESS * sd[..., g]), np.nan)
            z = _standardize(logs, mu[..., g], sd[..., g], tail_u[..., g], tail_beta[..., g])
        lrv[:-1, g] = _long_run_variance(z[:, :, :-1], max_lag)  # pooled over conditions
        lrv[-1, g] = _long_run_variance(z[:, :, -1:], max_lag)  # all rows pooled
        rows[:, g] = np.median(n_rows.reshape(-1, k1), 0)
    return {
        "statistic": "wasserstein",
        "offset": OFFSET,
        "sizes": np.asarray(sizes, dtype=np.float64),
        "rows": rows,
        "mu": mu,
        "sd": sd,
        "tail_u": tail_u,
        "tail_beta": tail_beta,
        "lrv": lrv,
        "chunks": int(n_seq * sequence),
        "block_rows": int(block_rows),
        "split": split,
    }


def _z(x: float, mu: float, sd: float, u: float, beta: float) -> float:
    """z-score of ``x = log(W + offset)``: normal body, exponential tail above ``u``.

    Above ``u`` the tail probability is ``P(X > u) * exp(-(x - u) / beta)``
    (``P(X > u)`` from the normal body, so the two parts join), turned back into
    a standard normal score.
    """
    body = (x - mu) / sd
    if not (np.isfinite(u) and np.isfinite(beta)) or x <= u:
        return body
    log_p = math.log(0.5 * math.erfc((u - mu) / sd / math.sqrt(2))) - (x - u) / beta
    return -_NORMAL.inv_cdf(max(math.exp(log_p), 1e-300))


_standardize = np.vectorize(_z, otypes=[float])


def _long_run_variance(z: np.ndarray, max_lag: int) -> float:
    """``1 + 2 sum_l (1 - l/(L+1)) rho_l`` of z (sequences, time, ...), pooled over the rest."""
    total = 0.0
    for lag in range(1, min(max_lag, z.shape[1] - 2) + 1):
        a, c = z[:, lag:], z[:, :-lag]
        ok = np.isfinite(a) & np.isfinite(c)
        if ok.sum() < 30:
            break
        rho = float(np.corrcoef(a[ok], c[ok])[0, 1])
        total += (1 - lag / (max_lag + 1)) * rho
    return max(1.0, 1.0 + 2.0 * total)


def _interp(log_n: float, grid: np.ndarray, values: np.ndarray) -> float:
    ok = np.isfinite(grid) & np.isfinite(values)
    if not ok.any():
        return float("nan")
    return float(np.interp(log_n, grid[ok], values[ok]))


def null_scores(
    profile: ReferenceProfile, wasserstein: np.ndarray, n: np.ndarray, whiten: bool = False
) -> np.ndarray:
    """z-scores (K+2, S) of a chunk's normalized Wasserstein distances under the null.

    ``wasserstein`` and ``n`` (non-missing rows) are (K+2, S) as in
    :class:`~plantml.monitoring.drift.ChunkDrift`. The unseen block, blocks
    with fewer than ``MIN_ROWS`` rows, and cells the null could not calibrate
    are NaN (not tested). ``whiten`` divides by the square root of the long-run
    variance factor, so that sums over consecutive chunks have unit variance
    (what a CUSUM needs). Needs a profile with a ``null`` block.
    """
    null = profile.null
    if null is None:
        raise ValueError("the reference profile has no null model; re-export the bundle")
    k = profile.n_conditions
    z = np.full(np.shape(wasserstein), np.nan)
    lrv_all = null.get("lrv")
    for b in [*range(k), k + 1]:
        nb = b if b < k else k
        log_grid = np.log(np.maximum(null["rows"][nb], 1.0))
        for j in range(z.shape[1]):
            if n[b, j] < MIN_ROWS or not np.isfinite(wasserstein[b, j]):
                continue
            log_n = float(np.log(n[b, j]))
            mu = _interp(log_n, log_grid, null["mu"][nb, j])
            sd = _interp(log_n, log_grid, null["sd"][nb, j])
            u = _interp(log_n, log_grid, null["tail_u"][nb, j]) if "tail_u" in null else np.nan
            beta = (
                _interp(log_n, log_grid, null["tail_beta"][nb, j]) if "tail_u" in null else np.nan
            )
            z[b, j] = _z(float(np.log(wasserstein[b, j] + null["offset"])), mu, sd, u, beta)
            if whiten and lrv_all is not None:
                z[b, j] /= np.sqrt(max(_interp(log_n, log_grid, lrv_all[nb]), 1.0))
    return z
