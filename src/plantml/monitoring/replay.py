"""Run the monitor over a replayed fleet stream: what it would have said, chunk by chunk.

Used by the slow scenario tests and ``scripts/bench_monitoring.py``: a steady-state
fleet replay (:func:`plantml.monitoring.scenarios.fleet_chunks`), optionally with a
:class:`~plantml.monitoring.scenarios.Drift` or a change of the condition mix from
chunk ``start`` on, checked chunk by chunk by a :class:`~plantml.monitoring.monitor.Monitor`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from plantml.monitoring.monitor import Monitor
from plantml.monitoring.profile import ReferenceProfile
from plantml.monitoring.rules import Rule
from plantml.monitoring.scenarios import Drift, Pool, fleet_chunks, thin_by_condition
from plantml.monitoring.sketch import ProfileSketch


@dataclass
class ReplayResult:
    """First alert per rule (chunk index, or None), where the first alert of each rule
    pointed (condition, signal), and every chunk's verdict."""

    first: dict[str, int | None]
    where: dict[str, tuple[str, str]]
    verdicts: list[dict[str, Any]] = field(default_factory=list)

    def alerted(self, rule: str, after: int = 0) -> bool:
        t = self.first.get(rule)
        return t is not None and t >= after

    def delay(self, rule: str, start: int) -> float:
        """Chunks from ``start`` to the first alert of ``rule``; inf if none, or one came before."""
        t = self.first.get(rule)
        return float("inf") if t is None or t < start else float(t - start)


def replay(
    profile: ReferenceProfile,
    rules: list[Rule],
    pool: Pool,
    seed: int,
    chunks: int,
    active: int = 10,
    rows_per_asset: int = 20,
    drift: Drift | None = None,
    thin: dict[int, float] | None = None,
    start: int = 0,
) -> ReplayResult:
    """Replay ``pool`` as ``chunks`` chunks of a fleet and check each one."""
    rng = np.random.default_rng(seed)
    monitor = Monitor(profile, rules)
    result = ReplayResult({r.name: None for r in rules}, {})
    for t, idx in enumerate(fleet_chunks(pool, rng, chunks, active, rows_per_asset)):
        x, codes = pool.x[idx], pool.codes[idx]
        distance = None if pool.distance is None else pool.distance[idx]
        if thin is not None and t >= start:
            keep = thin_by_condition(codes, thin, rng)
            x, codes = x[keep], codes[keep]
            distance = None if distance is None else distance[keep]
        if drift is not None:
            x, codes = drift.apply(profile, t, x, codes, pool.runs[idx], rng)
        check = monitor.check(t, ProfileSketch(profile).update(x, codes, distance=distance))
        result.verdicts.append(check["verdict"])
        for alert in check["alerts"]["opened"]:
            if result.first.get(alert["rule"]) is None:
                result.first[alert["rule"]] = t
                result.where[alert["rule"]] = (alert["condition"], alert["signal"])
    return result
