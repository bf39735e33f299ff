"""Normalization fitted on the training split only, optionally per operating condition."""

from __future__ import annotations

import logging

import numpy as np

from plantml.core.normalize import normalize
from plantml.errors import ConfigError

log = logging.getLogger(__name__)
METHODS = ("standard", "minmax", "none")


class Scaler:
    """Per-feature affine scaling ``(x - offset) / scale``.

    Args:
        method: ``standard`` (mean / std), ``minmax`` (to [0, 1]) or ``none``.
        per_condition: fit one set of statistics per operating condition;
            conditions unseen in training fall back to the global statistics.
        skip: feature indices left as they are (0/1 missing-value masks).
    """

    def __init__(self, method: str = "standard", per_condition: bool = False, skip=()):
        if method not in METHODS:
            raise ConfigError(
                f"unknown data.scaling.method {method!r}; use one of {', '.join(METHODS)}"
            )
        self.method = method
        self.per_condition = per_condition
        self.skip = list(skip)
        self.offset: np.ndarray | None = None  # (n_conditions + 1, features); last row global
        self.scale: np.ndarray | None = None

    def _stats(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if self.method == "standard":
            offset, scale = x.mean(0), x.std(0)
        elif self.method == "minmax":
            offset, scale = x.min(0), x.max(0) - x.min(0)
        else:
            offset, scale = np.zeros(x.shape[1]), np.ones(x.shape[1])
        scale = np.where(scale > 1e-8 * np.maximum(np.abs(offset), 1.0), scale, 1.0)
        offset, scale = offset.astype(np.float64), scale.astype(np.float64)
        offset[self.skip], scale[self.skip] = 0.0, 1.0
        return offset, scale

    def fit(self, x: np.ndarray, conditions: np.ndarray, n_conditions: int) -> Scaler:
        """Fit on training rows ``x`` (rows, features) with their condition codes."""
        glob_off, glob_scale = self._stats(x)
        self.offset = np.tile(glob_off, (n_conditions + 1, 1))
        self.scale = np.tile(glob_scale, (n_conditions + 1, 1))
        if self.per_condition:
            for c in range(n_conditions):
                rows = conditions == c
                if rows.sum() >= 2:
                    self.offset[c], self.scale[c] = self._stats(x[rows])
                else:
                    log.warning(
                        "condition %d has %d training rows: using global scaling", c, rows.sum()
                    )
        return self

    def transform(self, x: np.ndarray, conditions: np.ndarray) -> np.ndarray:
        """Scaled copy of ``x`` as float32; a condition code of -1 or unseen uses global stats."""
        return normalize(x, conditions, self.offset, self.scale, self.per_condition)

    def state(self) -> dict:
        return {
            "method": self.method,
            "per_condition": self.per_condition,
            "offset": self.offset.tolist(),
            "scale": self.scale.tolist(),
        }
