"""Split conformal RUL intervals, overall or per operating condition (Mondrian).

Fitted on calibration windows (the validation units, never seen in training): the
half-width ``q`` is the ``ceil((n + 1) * level)``-th smallest absolute residual
``|true - predicted|`` of the ``n`` calibration windows, and ``[p - q, p + q]`` covers the
true RUL of a new window with probability at least ``level`` when calibration and new
units are exchangeable (Vovk et al. 2005; Lei et al. 2018). Mondrian conformal does
this per operating condition, so that the guarantee holds in each condition, not only
on average. Windows of one unit are not independent, so the guarantee is over units:
coverage is measured on held-out units (:func:`coverage_table`).

Torch-free; :mod:`plantml.core.intervals` applies the half-widths on both sides.
"""

from __future__ import annotations

import math

import numpy as np

from plantml.core.intervals import interval_bounds
from plantml.errors import ConfigError

BY = ("none", "condition")


def check_options(level, by: str) -> tuple[float, str]:
    """``(level, by)`` checked: level in (0, 1), by ``none`` or ``condition``."""
    try:
        level = float(level)
    except (TypeError, ValueError):
        raise ConfigError(f"conformal.level must be a number in (0, 1), got {level!r}") from None
    if not 0.0 < level < 1.0:
        raise ConfigError(f"conformal.level must be in (0, 1) (e.g. 0.9), got {level}")
    if by not in BY:
        raise ConfigError(f"unknown conformal.by {by!r}; use one of {', '.join(BY)}")
    return level, by


def conformal_quantile(residuals: np.ndarray, level: float) -> float:
    """The split-conformal half-width of absolute residuals ``(n,)`` (inf if n is too small)."""
    r = np.sort(np.abs(np.asarray(residuals, dtype=np.float64)))
    k = math.ceil((len(r) + 1) * level)
    return float(r[k - 1]) if 0 < k <= len(r) else math.inf


def fit_half_widths(
    pred: np.ndarray,
    target: np.ndarray,
    codes: np.ndarray,
    n_conditions: int,
    level: float,
    by: str,
) -> tuple[np.ndarray, list[str]]:
    """Half-widths ``(n_conditions + 1,)`` (last global) and notes on conditions that fell back.

    With ``by == "none"`` every entry is the global half-width. A condition with too few
    calibration windows for ``level`` (fewer than ``1 / (1 - level) - 1``) uses the global one.
    """
    level, by = check_options(level, by)
    resid = np.asarray(target, np.float64) - np.asarray(pred, np.float64)
    codes = np.asarray(codes)
    glob = conformal_quantile(resid, level)
    if not math.isfinite(glob):
        raise ConfigError(
            f"{len(resid)} calibration windows are too few for conformal.level={level}; "
            f"it needs at least {math.ceil(level / (1 - level))}"
        )
    out = np.full(n_conditions + 1, glob)
    notes = []
    if by == "condition":
        for c in range(n_conditions):
            mask = codes == c
            q = conformal_quantile(resid[mask], level)
            if math.isfinite(q):
                out[c] = q
            else:
                notes.append(
                    f"condition {c} has {int(mask.sum())} calibration windows, too few for "
                    f"level {level}: it uses the global half-width {glob:.3g}"
                )
    return out, notes


def coverage_table(
    pred: np.ndarray,
    target: np.ndarray,
    codes: np.ndarray,
    half_width: np.ndarray,
    by: str,
    condition_names: list[str],
) -> dict:
    """Coverage and mean interval width, overall and per condition, of one scored split.

    Returns ``{"coverage", "width", "n", "by_condition": {name: {...}}}``; the width is the
    mean of ``high - low`` after clipping the lower bound at 0.
    """
    low, high = interval_bounds(pred, codes, half_width, by == "condition")
    target = np.asarray(target, np.float64)
    inside = (target >= low) & (target <= high)
    width = (high - low).astype(np.float64)

    def summary(mask: np.ndarray) -> dict:
        n = int(mask.sum())
        return {
            "coverage": float(inside[mask].mean()) if n else None,
            "width": float(width[mask].mean()) if n else None,
            "n": n,
        }

    codes = np.asarray(codes)
    out = summary(np.ones(len(target), bool))
    out["by_condition"] = {
        (condition_names[c] if 0 <= c < len(condition_names) else "unseen"): summary(codes == c)
        for c in np.unique(codes).tolist()
    }
    return out


def crossfit_coverage(
    pred: np.ndarray,
    target: np.ndarray,
    codes: np.ndarray,
    assets: np.ndarray,
    n_conditions: int,
    level: float,
    by: str,
    condition_names: list[str],
    repeats: int = 20,
    seed: int = 0,
) -> dict:
    """Coverage on units never used for calibration when there is no test split.

    The scored units are split in two halves at random, ``repeats`` times; each half is
    calibrated on the other and scored. Returns :func:`coverage_table`'s layout with the
    means over repeats, plus ``coverage_std`` (overall) across repeats.
    """
    units = np.unique(assets)
    if len(units) < 4:
        raise ConfigError(
            f"{len(units)} validation units are too few to measure conformal coverage on "
            "units not used for calibration (at least 4); hold out test units "
            "(data.split_by.test_fraction) or more validation units"
        )
    rng = np.random.default_rng(seed)
    tables = []
    for _ in range(repeats):
        half = np.isin(assets, rng.permutation(units)[: len(units) // 2])
        for cal, ev in ((half, ~half), (~half, half)):
            q, _ = fit_half_widths(pred[cal], target[cal], codes[cal], n_conditions, level, by)
            tables.append(coverage_table(pred[ev], target[ev], codes[ev], q, by, condition_names))
    covs = np.array([t["coverage"] for t in tables])
    out = {
        "coverage": float(covs.mean()),
        "coverage_std": float(covs.std(ddof=1)),
        "width": float(np.mean([t["width"] for t in tables])),
        "n": len(target),
        "by_condition": {},
    }
    for name in tables[0]["by_condition"]:
        rows = [t["by_condition"][name] for t in tables if name in t["by_condition"]]
        rows = [r for r in rows if r["n"]]
        out["by_condition"][name] = {
            "coverage": float(np.mean([r["coverage"] for r in rows])),
            "width": float(np.mean([r["width"] for r in rows])),
            "n": int(np.mean([r["n"] for r in rows])),
        }
    return out


def interval_manifest(half_width: np.ndarray, level: float, by: str, n: int, **extra) -> dict:
    """The ``task.interval`` block of a bundle manifest (read by :mod:`plantml.core.intervals`)."""
    return {
        "method": "split_conformal",
        "level": float(level),
        "by": by,
        "half_width": [float(v) for v in half_width],
        "floor": 0.0,
        "calibration_windows": int(n),
        **extra,
    }
