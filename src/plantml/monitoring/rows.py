"""Raw rows as the sketches read them: features (n, C), condition codes, cluster distances.

The same parsing and condition rules as the edge runtime
(:mod:`plantml.edge.preprocess`), but nothing is normalized or rejected: a
missing or bad feature value stays NaN and counts as missing in the sketch.
Numpy only (device side).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from plantml.core.conditions import ConditionRule
from plantml.edge.bundle import Bundle
from plantml.edge.preprocess import InputError, parse_numbers, parse_times


@dataclass
class MonitorRows:
    """Rows for a sketch: ``x`` (n, C) raw float64 (NaN missing), ``codes`` (n,) int64
    (-1 unseen), ``distance`` (n,) or None, ``time`` (n,) float64 (POSIX seconds or
    time units), ``asset`` (n,) str."""

    x: np.ndarray
    codes: np.ndarray
    distance: np.ndarray | None
    time: np.ndarray
    asset: np.ndarray

    def take(self, idx: np.ndarray) -> MonitorRows:
        return MonitorRows(
            self.x[idx],
            self.codes[idx],
            None if self.distance is None else self.distance[idx],
            self.time[idx],
            self.asset[idx],
        )


def condition_codes(
    assigner: ConditionRule, columns: Mapping[str, Sequence], n: int
) -> tuple[np.ndarray, np.ndarray | None]:
    """Codes (n,) and, for cluster conditions, distances (n,) from columnar rows."""
    if assigner.mode == "cluster":
        settings = np.column_stack([parse_numbers(columns[c]) for c in assigner.settings])
        codes, distance = assigner.nearest(settings)
        bad = ~np.isfinite(settings).all(1)
        codes[bad] = -1  # settings missing: the condition is unknown
        return codes, np.where(bad, np.nan, distance)
    if assigner.mode == "column":
        return np.array([assigner.category(v) for v in columns[assigner.column]], np.int64), None
    return np.zeros(n, dtype=np.int64), None


def monitor_rows(bundle: Bundle, columns: Mapping[str, Sequence]) -> MonitorRows:
    """Columnar rows ``{column: values}`` (as read from CSV or Parquet) for a sketch."""
    needed = [c for c in bundle.required_columns if c != bundle.time_column]
    missing = [c for c in needed if c not in columns]
    if missing:
        raise InputError(
            f"input lacks the column(s) {missing} that bundle {bundle.name!r} reads; "
            f"columns present: {', '.join(map(str, columns)) or 'none'}"
        )
    n = len(columns[bundle.asset_column])
    x = np.column_stack([parse_numbers(columns[c]) for c in bundle.feature_columns])
    x[~np.isfinite(x)] = np.nan
    codes, distance = condition_codes(ConditionRule(bundle.conditions), columns, n)
    time = (
        parse_times(columns[bundle.time_column], bundle.input["time_kind"])
        if bundle.time_column in columns
        else np.full(n, np.nan)
    )
    asset = np.array([str(a) for a in columns[bundle.asset_column]], dtype=object)
    return MonitorRows(x.reshape(n, -1), codes, distance, time, asset)


def row_codes(assigner: ConditionRule, rows: list[Mapping[str, Any]]) -> tuple:
    """Codes and distances for a list of row dicts (the agent's buffered rows)."""
    columns = {c: [r.get(c) for r in rows] for c in _condition_columns(assigner)}
    return condition_codes(assigner, columns, len(rows))


def _condition_columns(assigner: ConditionRule) -> list[str]:
    if assigner.mode == "cluster":
        return list(assigner.settings)
    if assigner.mode == "column":
        return [assigner.column]
    return []
