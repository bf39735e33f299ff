"""Sequential drift tests with controlled false alarms: CUSUM, horizon p-values, Benjamini-Hochberg.

A fleet runs many tests (conditions x signals x chunks). Each test follows a
CUSUM of its chunk z-scores (:func:`plantml.monitoring.null.null_scores`,
standard normal when nothing drifts)::

    S_t = max(0, S_{t-1} + z_t - k)

and reports the **horizon p-value** ``P(max_{s <= T} S_s >= S_t)`` under the
null: the chance that an in-control test reaches the current level anywhere
within ``T`` chunks (computed once per (k, T) with the Markov-chain method of
Brook & Evans, 1972). It is valid at every check of the horizon at once (an
in-control test ever shows p <= x with probability <= x), so checking after
every chunk costs nothing. A CUSUM is slow to react to one large jump, so a
Shewhart limit runs beside it (``T * P(Z > z_t)``, the union bound over the
horizon) and the test reports twice the smaller of the two p-values. At each check, Benjamini-Hochberg across that
check's tests decides which ones drift, at level ``alpha``: under no drift at
all, a check alarms with probability <= alpha (Simes), and the Bonferroni
bound over the tests keeps the chance of any false alarm within T chunks near
alpha. Where drift is real, the CUSUM accumulates small shifts chunk after
chunk; ``since`` is where its current excursion began (the change-point
estimate).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np
from scipy.special import ndtr

GRID_H = np.r_[np.linspace(0.0, 4.0, 21)[1:], np.linspace(4.5, 40.0, 72)]


@lru_cache(maxsize=32)
def _crossing_table(k: float, horizon: int, cells: int = 120) -> tuple[np.ndarray, np.ndarray]:
    """``P(max_{s<=T} S_s >= h)`` for the h grid, i.i.d. N(0,1) increments (Brook-Evans)."""
    probs = np.empty(len(GRID_H))
    for i, h in enumerate(GRID_H):
        w = h / cells
        s = np.arange(cells) * w  # state j: S in [(j - 1/2) w, (j + 1/2) w); state 0 holds S = 0
        upper = (np.arange(cells) + 0.5) * w
        cdf = ndtr(upper[None, :] - s[:, None] + k)  # P(next <= upper_j | s_i)
        q = np.diff(np.column_stack([np.zeros(cells), cdf]), axis=1)
        absorb = ndtr(s - upper[-1] - k)  # P(next > h - w/2 | s_i), without cancellation
        alive = np.zeros(cells)
        alive[0] = 1.0
        total = 0.0
        for _ in range(int(horizon)):  # a sum of positive terms: accurate far into the tail
            total += alive @ absorb
            alive = alive @ q
        probs[i] = total
    return GRID_H.copy(), np.clip(probs, 1e-300, 1.0)


def horizon_pvalue(s: np.ndarray, k: float, horizon: int) -> np.ndarray:
    """``P(max CUSUM within horizon >= s)`` under the null, elementwise; 1 for s <= 0, NaN kept."""
    grid, probs = _crossing_table(float(k), int(horizon))
    s = np.asarray(s, dtype=np.float64)
    logp = np.interp(s, grid, np.log(probs), left=0.0, right=None)
    beyond = s > grid[-1]  # extrapolate the log-linear tail
    if np.any(beyond):
        slope = (np.log(probs[-1]) - np.log(probs[-2])) / (grid[-1] - grid[-2])
        logp = np.where(beyond, np.log(probs[-1]) + slope * (s - grid[-1]), logp)
    p = np.clip(np.exp(logp), 1e-300, 1.0)
    return np.where(np.isnan(s), np.nan, np.where(s <= 0, 1.0, p))


def combined_pvalue(s: np.ndarray, z: np.ndarray, k: float, horizon: int) -> np.ndarray:
    """Horizon p-value of a CUSUM-Shewhart pair: ``min(1, 2 min(p_cusum, p_single))``.

    ``p_cusum`` is :func:`horizon_pvalue` of the level ``s`` (small shifts that
    persist), ``p_single = horizon * P(Z > z)`` the chance that any single chunk
    of the horizon scores ``z`` or more (one large jump, seen at once). Both are
    valid over the horizon, and so is twice the smaller (Bonferroni).
    """
    p_cusum = horizon_pvalue(s, k, horizon)
    p_single = np.minimum(1.0, horizon * ndtr(-np.asarray(z, dtype=np.float64)))
    return np.minimum(1.0, 2.0 * np.minimum(p_cusum, p_single))


def benjamini_hochberg(p: np.ndarray, alpha: float) -> np.ndarray:
    """Rejections (bool, same shape) of the BH procedure at level ``alpha``; NaN never rejected."""
    p = np.asarray(p, dtype=np.float64)
    flat = p.ravel()
    ok = np.flatnonzero(np.isfinite(flat))
    out = np.zeros(flat.shape, dtype=bool)
    m = len(ok)
    if m == 0:
        return out.reshape(p.shape)
    order = ok[np.argsort(flat[ok], kind="stable")]
    passed = flat[order] <= alpha * np.arange(1, m + 1) / m
    if passed.any():
        last = np.flatnonzero(passed).max()
        out[order[: last + 1]] = True
    return out.reshape(p.shape)


@dataclass
class CusumState:
    """One test's CUSUM: level ``s``, where its excursion began, how many chunks it has seen."""

    s: float = 0.0
    since: Any = None
    chunks: int = 0
    last_z: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"s": self.s, "since": self.since, "chunks": self.chunks, "last_z": self.last_z}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CusumState:
        return cls(float(d["s"]), d.get("since"), int(d.get("chunks", 0)), d.get("last_z"))


@dataclass
class SequentialTest:
    """CUSUM states of a family of tests (keyed by name), updated one check at a time."""

    k: float = 0.5
    horizon: int = 200
    alpha: float = 0.05
    states: dict[str, CusumState] = field(default_factory=dict)

    def update(self, z: dict[str, float], time: Any) -> dict[str, dict[str, Any]]:
        """Feed one check's z-scores ``{key: z}`` (NaN: not tested this time).

        Returns per key: ``s``, ``p`` (horizon p-value), ``since``, ``z`` and
        ``reject`` (Benjamini-Hochberg across this check's keys at ``alpha``).
        """
        out: dict[str, dict[str, Any]] = {}
        for key, value in z.items():
            state = self.states.setdefault(key, CusumState())
            if value is None or not np.isfinite(value):
                out[key] = {"s": state.s, "z": None, "since": state.since, "p": np.nan}
                continue
            new = max(0.0, state.s + float(value) - self.k)
            if state.s == 0.0 and new > 0.0:
                state.since = time
            elif new == 0.0:
                state.since = None
            state.s, state.chunks, state.last_z = new, state.chunks + 1, float(value)
            out[key] = {"s": new, "z": float(value), "since": state.since}
        keys = [key for key in out if np.isfinite(out[key].get("p", 0.0))]
        p = combined_pvalue(
            np.array([out[key]["s"] for key in keys]),
            np.array([out[key]["z"] for key in keys]),
            self.k,
            self.horizon,
        )
        reject = benjamini_hochberg(p, self.alpha)
        for key, pk, rk in zip(keys, p, reject, strict=True):
            out[key]["p"] = float(pk)
            out[key]["reject"] = bool(rk)
        for value in out.values():
            value.setdefault("reject", False)
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "k": self.k,
            "horizon": self.horizon,
            "alpha": self.alpha,
            "states": {key: s.to_dict() for key, s in self.states.items()},
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SequentialTest:
        return cls(
            float(d["k"]),
            int(d["horizon"]),
            float(d["alpha"]),
            {key: CusumState.from_dict(s) for key, s in (d.get("states") or {}).items()},
        )
