"""Distances between binned distributions: PSI, Kolmogorov-Smirnov, Wasserstein (numpy only).

Every function takes histograms on the same bins (counts on the last axis) and
works on any leading shape, so a whole sketch (blocks x signals) is one call.
Bins are the reference's quantile bins: bin ``i`` holds ``edges[i-1] <= x < edges[i]``,
the outer bins are open. All statistics are functions of the counts (and, for
Wasserstein, the observed min and max), so merged sketches give exactly the
statistics of the pooled rows.
"""

from __future__ import annotations

import numpy as np

PSI_EPS = 1e-4  # floor on a bin's share, so that empty bins give a finite PSI


def shares(counts: np.ndarray) -> np.ndarray:
    """Counts (..., B) -> shares per bin (..., B); NaN where a histogram is empty."""
    counts = np.asarray(counts, dtype=np.float64)
    total = counts.sum(-1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, counts / total, np.nan)


def psi(reference: np.ndarray, current: np.ndarray, eps: float = PSI_EPS) -> np.ndarray:
    """Population stability index, sum (q - p) ln(q / p) over bins; (..., B) -> (...).

    Common reading: < 0.1 stable, 0.1-0.25 moderate shift, > 0.25 large shift.
    """
    p = np.maximum(shares(reference), eps)
    q = np.maximum(shares(current), eps)
    return ((q - p) * np.log(q / p)).sum(-1)


def ks(reference: np.ndarray, current: np.ndarray) -> np.ndarray:
    """Kolmogorov-Smirnov distance at the bin edges: max |F_ref(e) - F_cur(e)|; (..., B) -> (...)."""
    f_ref = np.cumsum(shares(reference), -1)[..., :-1]
    f_cur = np.cumsum(shares(current), -1)[..., :-1]
    if f_ref.shape[-1] == 0:
        return np.zeros(f_ref.shape[:-1])
    return np.abs(f_ref - f_cur).max(-1)


def kolmogorov_sf(x: np.ndarray) -> np.ndarray:
    """P(K > x) of the Kolmogorov distribution (the asymptotic KS law), elementwise."""
    x = np.asarray(x, dtype=np.float64)
    k = np.arange(1, 101)
    terms = 2 * (-1.0) ** (k - 1) * np.exp(-2 * (k**2) * np.maximum(x[..., None], 1e-3) ** 2)
    return np.clip(np.where(x > 0.05, terms.sum(-1), 1.0), 0.0, 1.0)


def ks_pvalue(d: np.ndarray, n_ref: np.ndarray, n_cur: np.ndarray) -> np.ndarray:
    """Asymptotic two-sample KS p-value of distance ``d`` for sample sizes ``n_ref``, ``n_cur``.

    Assumes independent rows; sensor rows are autocorrelated, so the p-value is
    optimistic. The alert rules use calibrated tests instead
    (:mod:`plantml.monitoring.sequential`); this one is reported for reference.
    """
    n_ref = np.asarray(n_ref, dtype=np.float64)
    n_cur = np.asarray(n_cur, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        en = np.sqrt(n_ref * n_cur / (n_ref + n_cur))
        lam = (en + 0.12 + 0.11 / en) * np.asarray(d)
    return np.where((n_ref > 0) & (n_cur > 0), kolmogorov_sf(np.nan_to_num(lam)), np.nan)


def _knots(edges: np.ndarray, lo: np.ndarray, hi: np.ndarray, tails: np.ndarray) -> np.ndarray:
    """Bin boundaries (P, B+1) from interior edges (P, B-1), the observed range (P,) and the
    mean of the outer bins (P, 2): an open outer bin spans what a uniform bin with that mean
    would (within the observed range), the inner edges are clipped to the range."""
    hi = np.maximum(hi, lo)
    inner = np.clip(edges, lo[:, None], hi[:, None])
    first, last = inner[:, 0], inner[:, -1]
    low = np.where(np.isfinite(tails[:, 0]), np.clip(2 * tails[:, 0] - first, lo, first), lo)
    high = np.where(np.isfinite(tails[:, 1]), np.clip(2 * tails[:, 1] - last, last, hi), hi)
    return np.column_stack([low, inner, high])


def _quantile_at(u: np.ndarray, cum: np.ndarray, knots: np.ndarray, bins: np.ndarray) -> np.ndarray:
    """Quantile function at ``u`` (P, M) inside bins ``bins`` (P, M), values uniform within a bin."""
    p0 = np.take_along_axis(cum, bins - 1, 1)
    p1 = np.take_along_axis(cum, bins, 1)
    x0 = np.take_along_axis(knots, bins - 1, 1)
    x1 = np.take_along_axis(knots, bins, 1)
    width = p1 - p0
    frac = np.where(width > 0, (u - p0) / np.where(width > 0, width, 1.0), 0.0)
    return x0 + np.clip(frac, 0.0, 1.0) * (x1 - x0)


def wasserstein(
    ref_counts: np.ndarray,
    ref_lo: np.ndarray,
    ref_hi: np.ndarray,
    cur_counts: np.ndarray,
    cur_lo: np.ndarray,
    cur_hi: np.ndarray,
    edges: np.ndarray,
    ref_tails: np.ndarray | None = None,
    cur_tails: np.ndarray | None = None,
) -> np.ndarray:
    """Wasserstein-1 distance between two binned distributions, exactly; -> (...).

    Each distribution is uniform within each bin, between the bin's edges
    clipped to its own observed ``[lo, hi]``; an open outer bin with a known
    mean (``tails``: the mean of the first and last bin) spans the uniform
    interval with that mean. ``W1 = integral over u in (0, 1) of |Q_ref(u) -
    Q_cur(u)|`` is integrated exactly: both quantile functions are linear
    between the union of their cumulative shares.

    Shapes: counts (..., B), lo and hi (...), edges (..., B-1), tails (..., 2).
    NaN where either is empty.
    """
    lead = np.shape(ref_counts)[:-1]
    b = np.shape(ref_counts)[-1]
    rc = np.asarray(ref_counts, dtype=np.float64).reshape(-1, b)
    cc = np.asarray(cur_counts, dtype=np.float64).reshape(-1, b)
    e = np.broadcast_to(np.asarray(edges, dtype=np.float64), (*lead, b - 1)).reshape(-1, b - 1)
    flat = [
        np.broadcast_to(np.asarray(a, np.float64), lead).reshape(-1)
        for a in (ref_lo, ref_hi, cur_lo, cur_hi)
    ]
    tails = [
        np.full((len(rc), 2), np.nan)
        if t is None
        else np.broadcast_to(np.asarray(t, np.float64), (*lead, 2)).reshape(-1, 2)
        for t in (ref_tails, cur_tails)
    ]
    n_r, n_c = rc.sum(1), cc.sum(1)
    ok = (n_r > 0) & (n_c > 0) & np.isfinite(flat[0]) & np.isfinite(flat[2])
    out = np.full(len(rc), np.nan)
    if not ok.any():
        return out.reshape(lead)
    rc, cc, e = rc[ok], cc[ok], e[ok]
    r_lo, r_hi, c_lo, c_hi = (a[ok] for a in flat)
    r_tail, c_tail = tails[0][ok], tails[1][ok]
    cum_r = np.column_stack([np.zeros(len(rc)), np.cumsum(rc, 1) / rc.sum(1, keepdims=True)])
    cum_c = np.column_stack([np.zeros(len(cc)), np.cumsum(cc, 1) / cc.sum(1, keepdims=True)])
    cum_r[:, -1] = cum_c[:, -1] = 1.0
    knots_r, knots_c = _knots(e, r_lo, r_hi, r_tail), _knots(e, c_lo, c_hi, c_tail)
    u = np.sort(np.column_stack([cum_r, cum_c]), 1)
    a, z = u[:, :-1], u[:, 1:]
    mid = 0.5 * (a + z)
    bins_r = 1 + (cum_r[:, None, 1:-1] < mid[:, :, None]).sum(-1)
    bins_c = 1 + (cum_c[:, None, 1:-1] < mid[:, :, None]).sum(-1)
    da = _quantile_at(a, cum_r, knots_r, bins_r) - _quantile_at(a, cum_c, knots_c, bins_c)
    dz = _quantile_at(z, cum_r, knots_r, bins_r) - _quantile_at(z, cum_c, knots_c, bins_c)
    same = da * dz >= 0
    total = np.abs(da) + np.abs(dz)
    cross = np.where(total > 0, (da**2 + dz**2) / (2 * np.where(total > 0, total, 1.0)), 0.0)
    area = np.where(same, 0.5 * total, cross) * (z - a)
    out[ok] = area.sum(1)
    return out.reshape(lead)


def chi_square(expected_shares: np.ndarray, observed: np.ndarray) -> tuple[float, int]:
    """Pearson chi-square of counts ``observed`` (K,) against ``expected_shares`` (K,).

    Categories with no expected share are left out; returns (statistic, degrees of freedom).
    """
    p = np.asarray(expected_shares, dtype=np.float64)
    o = np.asarray(observed, dtype=np.float64)
    keep = p > 0
    n = o[keep].sum()
    if n <= 0 or keep.sum() < 2:
        return 0.0, 0
    e = n * p[keep] / p[keep].sum()
    return float(((o[keep] - e) ** 2 / e).sum()), int(keep.sum() - 1)
