"""Operating conditions: every row (and so every window) carries a condition label.

Either a configured column names the condition (load class, product type), or
the operating settings are clustered (C-MAPSS FD002 and FD004 have six
conditions, the six clusters of op_setting_1..3). Clusters are fitted on the
training rows only and every other row goes to its nearest centroid.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from plantml.core.conditions import ConditionRule, nearest_centroid
from plantml.data.table import SensorTable
from plantml.errors import ConfigError

log = logging.getLogger(__name__)


def kmeans(points: np.ndarray, k: int, seed: int = 0, n_init: int = 8, iters: int = 100):
    """k-means++ initialised Lloyd iterations; returns (centroids (k, d), labels (n,), inertia)."""
    rng = np.random.default_rng(seed)
    best = None
    n = len(points)
    for _ in range(n_init):
        centroids = [points[rng.integers(n)]]
        for _ in range(1, k):
            d2 = np.min(((points[:, None, :] - np.array(centroids)[None]) ** 2).sum(-1), axis=1)
            total = d2.sum()
            probs = d2 / total if total > 0 else np.full(n, 1.0 / n)
            centroids.append(points[rng.choice(n, p=probs)])
        centroids = np.array(centroids, dtype=np.float64)
        for _ in range(iters):
            labels = nearest_centroid(points, centroids)
            moved = np.array(
                [
                    points[labels == j].mean(0) if np.any(labels == j) else centroids[j]
                    for j in range(k)
                ]
            )
            if np.allclose(moved, centroids):
                break
            centroids = moved
        labels = nearest_centroid(points, centroids)
        inertia = float(((points - centroids[labels]) ** 2).sum())
        if best is None or inertia < best[2]:
            best = (centroids, labels, inertia)
    return best


class OperatingConditions:
    """Maps rows to operating-condition codes ``0..n-1`` with readable names.

    Args:
        column: a column that names the condition; default the table's
            ``condition_column``.
        settings: setting columns to cluster when there is no condition
            column; default the table's ``setting_columns``.
        n_clusters: number of clusters (C-MAPSS: 1 for FD001/FD003, 6 for
            FD002/FD004). With 1 (or no settings) every row is one condition.
        seed: k-means seed.
    """

    def __init__(
        self,
        column: str | None = None,
        settings: list[str] | None = None,
        n_clusters: int | None = None,
        seed: int = 0,
    ):
        if n_clusters is not None and int(n_clusters) < 1:
            raise ConfigError(f"data.conditions.n_clusters must be >= 1, got {n_clusters}")
        self.column = column
        self.settings = list(settings) if settings else None
        self.n_clusters = n_clusters
        self.seed = seed
        self.names: list[str] = []
        self.categories: list = []
        self.centroids: np.ndarray | None = None
        self.center: np.ndarray | None = None
        self.scale: np.ndarray | None = None
        self.mode = "single"

    def fit(self, table: SensorTable, rows: np.ndarray | None = None) -> OperatingConditions:
        """Learn the conditions from the rows selected by the boolean mask ``rows`` (train)."""
        frame = table.frame if rows is None else table.frame[rows]
        column = self.column or table.condition_column
        if column is not None:
            if column not in table.frame.columns:
                raise ConfigError(
                    f"condition column {column!r} not found; columns are: "
                    f"{', '.join(map(str, table.frame.columns))}"
                )
            self.mode, self.column = "column", column
            values = table.frame[column].dropna().unique()  # labels, not learned statistics
            self.categories = sorted(values.tolist(), key=str)
            self.names = [str(v) for v in self.categories]
            return self
        settings = self.settings if self.settings is not None else table.setting_columns
        k = int(self.n_clusters or 1)
        if k == 1 or not settings:
            self.mode, self.names = "single", ["all"]
            return self
        points = frame[settings].to_numpy(np.float64)
        points = points[np.isfinite(points).all(1)]
        if len(points) < k:
            raise ConfigError(
                f"cannot find {k} operating conditions in {len(points)} training rows; "
                "lower data.conditions.n_clusters"
            )
        self.center = points.mean(0)
        self.scale = points.std(0)
        self.scale[self.scale == 0] = 1.0
        centroids, _, _ = kmeans((points - self.center) / self.scale, k, seed=self.seed)
        raw = centroids * self.scale + self.center
        order = np.lexsort(raw.T[::-1])  # deterministic order: by first setting, then next
        self.centroids = centroids[order]
        self.mode, self.settings = "cluster", list(settings)
        self.names = [
            ", ".join(f"{s}={v:.3g}" for s, v in zip(settings, raw[j], strict=True)) for j in order
        ]
        log.info("operating conditions: %d clusters of %s", k, ", ".join(settings))
        return self

    def assign(self, table: SensorTable) -> np.ndarray:
        """Condition code per row (int64) by :class:`plantml.core.conditions.ConditionRule`,
        the rule the edge device applies too. Unknown column values get code -1."""
        rule = ConditionRule(self.state())
        frame = table.frame
        n = len(frame)
        if self.mode == "column":
            codes = rule.column_codes(frame[self.column].to_numpy())
            unknown = codes < 0
            if unknown.any():
                seen = frame.loc[unknown, self.column].astype(str).unique()[:5]
                log.warning("condition values not seen when fitting: %s (code -1)", list(seen))
            return codes
        settings = frame[self.settings].to_numpy(np.float64) if self.mode == "cluster" else None
        return rule.codes(None, settings, n)

    def state(self) -> dict:
        """What an edge device needs to assign conditions itself (plain JSON types)."""
        return {
            "mode": self.mode,
            "column": self.column,
            "settings": self.settings,
            "names": self.names,
            "categories": [str(c) for c in self.categories],
            "center": None if self.center is None else self.center.tolist(),
            "scale": None if self.scale is None else self.scale.tolist(),
            "centroids": None if self.centroids is None else self.centroids.tolist(),
        }


def condition_counts(codes: np.ndarray, names: list[str]) -> pd.Series:
    counts = pd.Series(codes).value_counts().sort_index()
    return counts.rename(index=lambda c: names[c] if 0 <= c < len(names) else "unseen")
