"""Replays of in-control fleet data as production chunks, with drift injected on purpose.

What a monitor would say if a sensor drifted can be tested before it happens:
:func:`fleet_chunks` replays held-out assets as a fleet in steady state
(``active`` assets at a time, each at a random point of its life, a fresh one
starting when one ends; each chunk holds the next ``rows_per_asset`` rows of
every active asset), and :class:`Drift` changes the rows from a given chunk
on: a sensor bias (in reference stds of the row's condition), a stuck sensor
(frozen at its value when the drift starts), a slow gain drift, rows moved to
an unseen condition; :func:`thin_by_condition` changes the condition mix
without touching any condition's rows. Used by the slow tests and
``scripts/bench_monitoring.py``. Numpy only.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from plantml.monitoring.profile import ReferenceProfile

KINDS = ("bias", "stuck", "gain", "unseen")


@dataclass
class Pool:
    """In-control rows to replay: ``x`` (n, C) raw, ``codes`` (n,), ``distance`` (n,) or None,
    ``runs`` (n,) run id (rows ordered by run, then time)."""

    x: np.ndarray
    codes: np.ndarray
    runs: np.ndarray
    distance: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.starts = np.flatnonzero(np.r_[True, self.runs[1:] != self.runs[:-1]])
        self.lengths = np.diff(np.r_[self.starts, len(self.runs)])


def fleet_chunks(
    pool: Pool, rng: np.random.Generator, chunks: int, active: int = 10, rows_per_asset: int = 20
) -> list[np.ndarray]:
    """Row indices of ``chunks`` consecutive chunks of a steady-state fleet replay."""
    slots = []
    for _ in range(active):
        r = int(rng.integers(len(pool.starts)))
        slots.append([r, int(rng.integers(pool.lengths[r]))])
    out = []
    for _ in range(chunks):
        idx = []
        for slot in slots:
            r, pos = slot
            take = min(rows_per_asset, pool.lengths[r] - pos)
            idx.append(pool.starts[r] + pos + np.arange(take))
            slot[1] = pos + take
            if slot[1] >= pool.lengths[r]:  # the asset's life ended: a fresh one takes its place
                slot[0], slot[1] = int(rng.integers(len(pool.starts))), 0
        out.append(np.concatenate(idx))
    return out


def thin_by_condition(
    codes: np.ndarray, keep: dict[int, float], rng: np.random.Generator
) -> np.ndarray:
    """Boolean mask keeping each row of condition c with probability ``keep.get(c, 1)``."""
    p = np.array([keep.get(int(c), 1.0) for c in range(int(codes.max(initial=0)) + 1)])
    return rng.random(len(codes)) < p[np.clip(codes, 0, None)]


@dataclass
class Drift:
    """A drift of one feature (or of the conditions) from chunk ``start`` on.

    kind ``bias``: add ``size`` reference stds (of the row's condition);
    ``stuck``: the value freezes at each asset's first value in the drift;
    ``gain``: multiply by ``1 + g`` with ``g`` growing so that the mean moves
    ``size`` stds per ``ramp`` chunks; ``unseen``: a share ``size`` of the rows
    goes to an unseen condition (code -1, features scaled by 1.3).
    ``condition``: only rows of that condition code drift (None: all).
    """

    kind: str
    feature: int = 0
    size: float = 1.0
    start: int = 0
    condition: int | None = None
    ramp: int = 20
    _frozen: dict[int, float] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"drift kind {self.kind!r} is not one of {', '.join(KINDS)}")

    def apply(
        self,
        profile: ReferenceProfile,
        chunk: int,
        x: np.ndarray,
        codes: np.ndarray,
        runs: np.ndarray,
        rng: np.random.Generator,
    ) -> tuple[np.ndarray, np.ndarray]:
        """The chunk's rows (n, C) and codes (n,) after the drift (copies; unchanged before start)."""
        if chunk < self.start:
            return x, codes
        x, codes = x.copy(), codes.copy()
        k = profile.n_conditions
        known = (codes >= 0) & (codes < k)
        rows = known & (codes == self.condition) if self.condition is not None else known
        j = self.feature
        std = profile.std_floor[np.where(known, codes, k), j]
        mean = profile.stats["mean"][np.where(known, codes, k), j]
        if self.kind == "bias":
            x[rows, j] += self.size * std[rows]
        elif self.kind == "gain":
            g = (
                self.size
                * std
                / np.maximum(np.abs(mean), 1e-12)
                * (chunk - self.start + 1)
                / self.ramp
            )
            x[rows, j] *= 1.0 + g[rows]
        elif self.kind == "stuck":
            for i in np.flatnonzero(rows):
                x[i, j] = self._frozen.setdefault(int(runs[i]), float(x[i, j]))
        else:
            moved = rows & (rng.random(len(codes)) < self.size)
            codes[moved] = -1
            x[moved] *= 1.3
        return x, codes
