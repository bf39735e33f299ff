"""Operating-condition codes per row, from a fitted condition description.

The description is a plain dict (what training fits and what a bundle's
``conditions`` block stores)::

    {"mode": "single" | "column" | "cluster", "names": [str], "column": str | None,
     "categories": [str], "settings": [str] | None,
     "center": [float] | None, "scale": [float] | None, "centroids": [[float]] | None}

- ``single``: every row is condition 0.
- ``column``: the index of the row's value in ``categories``, compared as text
  (``"high"``), or by number when both are numbers (``1`` matches ``"1.0"``);
  a value not in ``categories`` (or missing) is -1, *unseen*.
- ``cluster``: the nearest centroid to ``nan_to_num((settings - center) / scale)``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

UNSEEN = "unseen"
CHUNK = 65536  # rows per distance computation: bounded memory for long tables


def nearest_centroid(
    points: np.ndarray, centroids: np.ndarray, distances: bool = False
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """Index of the nearest centroid (squared Euclidean) per point; (n, d), (k, d) -> (n,).

    With ``distances``, also the Euclidean distance to it, (n,) float64.
    """
    out = np.empty(len(points), dtype=np.int64)
    dist = np.empty(len(points), dtype=np.float64) if distances else None
    for start in range(0, len(points), CHUNK):
        p = points[start : start + CHUNK]
        d2 = ((p[:, None, :] - centroids[None]) ** 2).sum(-1)
        out[start : start + CHUNK] = np.argmin(d2, 1)
        if dist is not None:
            dist[start : start + CHUNK] = np.sqrt(d2.min(1))
    return (out, dist) if distances else out


def as_text(value: Any) -> str | None:
    """A category value as text; None when missing (None, NaN, blank)."""
    if value is None:
        return None
    if isinstance(value, float | np.floating) and math.isnan(value):
        return None
    text = value.strip() if isinstance(value, str) else str(value)
    return text or None


def _as_number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return math.nan


class ConditionRule:
    """Assigns operating-condition codes from a fitted description (see the module doc)."""

    def __init__(self, description: Mapping[str, Any]):
        self.mode = description["mode"]
        self.names = [str(n) for n in description["names"]]
        self.column = description.get("column")
        self.settings = list(description.get("settings") or [])
        categories = [as_text(c) for c in description.get("categories") or []]
        self.lookup = {c: i for i, c in enumerate(categories) if c is not None}
        self.numeric: dict[float, int] = {}
        for i, c in enumerate(categories):
            number = _as_number(c) if c is not None else math.nan
            if math.isfinite(number):
                self.numeric.setdefault(number, i)
        if self.mode == "cluster":
            self.center = np.asarray(description["center"], dtype=np.float64)
            self.scale = np.asarray(description["scale"], dtype=np.float64)
            self.centroids = np.asarray(description["centroids"], dtype=np.float64)

    @property
    def inputs(self) -> list[str]:
        """The input columns the rule reads (the condition column, or the settings)."""
        if self.mode == "column":
            return [self.column]
        return list(self.settings) if self.mode == "cluster" else []

    def name(self, code: int) -> str:
        return self.names[code] if 0 <= code < len(self.names) else UNSEEN

    def name_list(self, codes: np.ndarray) -> list[str]:
        """Condition name per code (``unseen`` for -1), (n,) -> list of n."""
        lookup = np.array([*self.names, UNSEEN], dtype=object)
        codes = np.asarray(codes)
        codes = np.where((codes >= 0) & (codes < len(self.names)), codes, len(self.names))
        return lookup[codes].tolist()

    def category(self, value: Any) -> int:
        """Code of one condition-column value; -1 when missing or not seen in training."""
        text = as_text(value)
        if text is None:
            return -1
        code = self.lookup.get(text)
        if code is None:
            code = self.numeric.get(_as_number(text), -1)
        return code

    def column_codes(self, values: Sequence | np.ndarray) -> np.ndarray:
        """Codes (n,) int64 of condition-column values (computed once per distinct value)."""
        values = np.asarray(values, dtype=object) if not isinstance(values, np.ndarray) else values
        if values.dtype != object:  # numbers, strings of one dtype: np.unique is fast
            distinct, inverse = np.unique(values, return_inverse=True)
            codes = np.array([self.category(v) for v in distinct.tolist()], dtype=np.int64)
            return codes[inverse.reshape(-1)] if len(values) else codes[:0]
        memo: dict[Any, int] = {}
        out = np.empty(len(values), dtype=np.int64)
        for i, v in enumerate(values.tolist()):
            try:
                out[i] = memo[v]
            except KeyError:
                out[i] = memo[v] = self.category(v)
            except TypeError:  # unhashable
                out[i] = self.category(v)
        return out

    def settings_codes(self, settings: np.ndarray) -> np.ndarray:
        """Codes (n,) of the settings matrix (n, k): the nearest scaled centroid."""
        return self.nearest(settings)[0]

    def nearest(self, settings: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Nearest centroid (n,) int64 and its distance (n,) for settings (n, k), cluster mode.

        The distance is in scaled settings units (``(settings - center) / scale``);
        monitoring compares it with the training range to flag unseen conditions.
        """
        points = np.nan_to_num((np.asarray(settings, dtype=np.float64) - self.center) / self.scale)
        return nearest_centroid(points, self.centroids, distances=True)

    def codes(self, values: Sequence | None, settings: np.ndarray | None, n: int) -> np.ndarray:
        """Codes (n,) int64 from the condition column's values or the settings matrix (n, k)."""
        if self.mode == "single":
            return np.zeros(n, dtype=np.int64)
        if self.mode == "column":
            return self.column_codes(values)
        return self.settings_codes(settings)
