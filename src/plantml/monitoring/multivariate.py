"""The multivariate drift signal: PCA reconstruction error, fitted on the reference rows.

Per block (condition, or all rows pooled) the features are standardized with the
reference mean and std and projected on the principal components that explain
``variance`` of the reference variance. A row's signal is the mean squared
residual off that subspace: it grows when the features stop moving together
the way they did in training (a sensor that drifts alone, a broken
correlation), even when each feature's own distribution looks normal.
Numpy only.
"""

from __future__ import annotations

import numpy as np


def fit_pca(x: np.ndarray, variance: float = 0.9) -> dict[str, np.ndarray]:
    """PCA of reference rows ``x`` (n, C): ``mean`` (C,), ``scale`` (C,), ``components`` (r, C).

    ``r`` is the fewest components explaining ``variance`` of the standardized
    variance, at most C - 1 so that a residual remains (r = 0 when C = 1 or
    there are fewer than 3 rows). Rows with a NaN are left out.
    """
    x = np.asarray(x, dtype=np.float64)
    c = x.shape[1]
    x = x[np.isfinite(x).all(1)]
    if len(x) < 3:
        return {"mean": np.zeros(c), "scale": np.ones(c), "components": np.zeros((0, c))}
    mean = x.mean(0)
    std = x.std(0)
    scale = np.where(std > 1e-12 * np.maximum(np.abs(mean), 1.0), std, 1.0)
    z = (x - mean) / scale
    _, s, vt = np.linalg.svd(z, full_matrices=False)
    explained = np.cumsum(s**2) / max(float((s**2).sum()), 1e-300)
    r = int(np.searchsorted(explained, variance) + 1)
    r = max(0, min(r, c - 1))
    return {"mean": mean, "scale": scale, "components": vt[:r].copy()}


def reconstruction_error(x: np.ndarray, pca: dict[str, np.ndarray]) -> np.ndarray:
    """Mean squared residual per row off the PCA subspace, (n, C) -> (n,); NaN rows give NaN."""
    z = (np.asarray(x, dtype=np.float64) - pca["mean"]) / pca["scale"]
    v = pca["components"]
    residual = z - (z @ v.T) @ v if len(v) else z
    return (residual**2).mean(axis=1)
