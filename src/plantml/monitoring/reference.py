"""Build a reference profile from arrays: training rows, validation outputs, held-out rows.

:func:`build_profile` is what ``plantml-export`` calls (through
:mod:`plantml.export.profile`, which pulls the arrays out of a prepared
training run); it is numpy only, so tests and scripts build profiles from any
data. Format: :mod:`plantml.monitoring.profile`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from plantml.monitoring.estimate import fit_isotonic
from plantml.monitoring.multivariate import fit_pca, reconstruction_error
from plantml.monitoring.null import fit_null
from plantml.monitoring.profile import OutputReference, ReferenceProfile, round_floats

DISTANCE_MARGIN = 1.5  # a row 1.5x farther from its centroid than any training row is unseen


@dataclass
class Outputs:
    """The model's outputs on the validation split, for the output reference and the calibrator.

    ``predictions`` (m,) (class indices for a class bundle), ``codes`` (m,)
    condition per window, ``alarms`` (m,) 0/1 or None, ``labels`` (m,) targets
    (for the failure-probability calibrator) or None.
    """

    kind: str
    name: str
    predictions: np.ndarray
    codes: np.ndarray
    alarms: np.ndarray | None = None
    labels: np.ndarray | None = None
    threshold: float | None = None
    alarm_when: str | None = None
    classes: list[str] | None = None
    split: str = "val"


@dataclass
class HeldOut:
    """In-control rows the reference never saw (the validation split), for the null model."""

    x: np.ndarray  # (n, C) raw
    codes: np.ndarray  # (n,)
    runs: np.ndarray  # (n,) run (asset, segment) id; rows ordered by run and time
    distance: np.ndarray | None = None
    split: str = "val"


def _edges(values: np.ndarray, bins: int) -> np.ndarray:
    """Interior quantile edges (S, B-1) of the finite values of each column of (n, S)."""
    q = np.arange(1, bins) / bins
    out = np.full((values.shape[1], bins - 1), np.nan)
    for j in range(values.shape[1]):
        v = values[np.isfinite(values[:, j]), j]
        if len(v):
            out[j] = np.quantile(v, q)
    return np.asarray(round_floats(out), dtype=np.float64)


def _describe(values: np.ndarray, edges: np.ndarray, bins: int) -> tuple[np.ndarray, dict]:
    """Counts (S, B); n, missing, mean, std, min, max (S,); tail_mean (S, 2): the mean of the
    values in the first and the last (open) bin, of columns of (n, S)."""
    fin = np.isfinite(values)
    counts = np.zeros((values.shape[1], bins), dtype=np.int64)
    for j in range(values.shape[1]):
        v = values[fin[:, j], j]
        counts[j] = np.bincount(np.searchsorted(edges[j], v, side="right"), minlength=bins)
    n = fin.sum(0)
    tails = np.full((values.shape[1], 2), np.nan)
    for j in range(values.shape[1]):
        v = values[fin[:, j], j]
        idx = np.searchsorted(edges[j], v, side="right")
        for side, b in ((0, 0), (1, bins - 1)):
            if (idx == b).any():
                tails[j, side] = v[idx == b].mean()
    with np.errstate(invalid="ignore"):
        masked = np.where(fin, values, np.nan)
        stats = {
            "tail_mean": tails,
            "n": n.astype(np.int64),
            "missing": (~fin).sum(0).astype(np.int64),
            "mean": np.where(n > 0, np.nanmean(masked, 0) if len(values) else np.nan, np.nan),
            "std": np.where(n > 0, np.nanstd(masked, 0) if len(values) else np.nan, np.nan),
            "min": np.where(n > 0, np.nanmin(masked, 0) if len(values) else np.nan, np.nan),
            "max": np.where(n > 0, np.nanmax(masked, 0) if len(values) else np.nan, np.nan),
        }
    return counts, stats


def _blockwise(values: list[np.ndarray], bins: int, min_rows: int) -> tuple:
    """Edges, counts and stats per block; blocks with too few rows take the pooled edges."""
    pooled_edges = _edges(values[-1], bins)
    edges, counts, stats = [], [], []
    for v in values:
        e = _edges(v, bins) if len(v) >= min_rows else pooled_edges
        e = np.where(np.isfinite(e), e, pooled_edges)
        c, s = _describe(v, e, bins)
        edges.append(e)
        counts.append(c)
        stats.append(s)
    return (
        np.stack(edges),
        np.stack(counts),
        {k: np.stack([s[k] for s in stats]) for k in stats[0]},
    )


def _output_reference(out: Outputs, k: int, bins: int) -> OutputReference:
    pred = np.asarray(out.predictions, dtype=np.float64).reshape(-1)
    codes = np.asarray(out.codes)
    blocks = [pred[codes == c][:, None] for c in range(k)] + [pred[:, None]]
    if out.kind == "class":  # one bin per class index
        n_classes = len(out.classes or []) or int(np.nanmax(pred, initial=0)) + 1
        edges = np.tile(np.arange(n_classes - 1) + 0.5, (k + 1, 1, 1))
        described = [_describe(b, edges[0], n_classes) for b in blocks]
        counts = np.stack([c for c, _ in described])
        stats = {key: np.stack([s[key] for _, s in described]) for key in described[0][1]}
    else:
        edges, counts, stats = _blockwise(blocks, bins, 2 * bins)
    alarms = None
    if out.alarms is not None:
        a = np.asarray(out.alarms).astype(np.int64)
        alarms = np.array([a[codes == c].sum() for c in range(k)] + [a.sum()], dtype=np.int64)
    return OutputReference(
        kind=out.kind,
        name=out.name,
        edges=edges[:, 0],
        counts=counts[:, 0],
        stats={key: stats[key][:, 0] for key in ("n", "mean", "std", "min", "max", "tail_mean")},
        alarms=alarms,
        threshold=None if out.threshold is None else float(out.threshold),
        alarm_when=out.alarm_when,
        classes=out.classes,
        split=out.split,
    )


def _rounded(pca: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """PCA arrays as the profile file keeps them, so reference and device errors agree."""
    return {
        key: np.asarray(round_floats(v), dtype=np.float64).reshape(np.shape(v))
        for key, v in pca.items()
    }


def build_profile(
    features: list[str],
    conditions: list[str],
    x: np.ndarray,
    codes: np.ndarray,
    *,
    distance: np.ndarray | None = None,
    outputs: Outputs | None = None,
    held_out: HeldOut | None = None,
    bins: int = 20,
    variance: float = 0.9,
    null_options: dict[str, Any] | None = None,
    source: dict[str, Any] | None = None,
) -> ReferenceProfile:
    """The reference profile of training rows ``x`` (n, C), raw, with condition codes (n,).

    Args:
        features, conditions: the bundle's feature columns and condition names.
        distance: for cluster conditions, each row's scaled distance to its
            centroid (n,); sets ``distance_limit``.
        outputs: the model's validation outputs (output reference, calibrator).
        held_out: in-control rows for the null model of the drift statistic.
        bins: quantile bins per feature and condition.
        variance: share of variance the PCA subspace keeps.
        null_options: keyword arguments of :func:`plantml.monitoring.null.fit_null`.
    """
    x = np.asarray(x, dtype=np.float64)
    codes = np.asarray(codes, dtype=np.int64)
    k = len(conditions)
    if x.ndim != 2 or x.shape[1] != len(features) or len(codes) != len(x):
        raise ValueError(
            f"x must be (n, {len(features)}) with one code per row; got {x.shape} and {codes.shape}"
        )
    if bins < 2:
        raise ValueError(f"bins must be >= 2, got {bins}")
    known = (codes >= 0) & (codes < k)
    rows = [x[codes == c] for c in range(k)] + [x[known]]
    pca = [_rounded(fit_pca(r if len(r) >= 3 else rows[-1], variance)) for r in rows]
    signals = [
        np.column_stack([r, reconstruction_error(r, p)]) for r, p in zip(rows, pca, strict=True)
    ]
    edges, counts, stats = _blockwise(signals, bins, 2 * bins)
    limit = None
    if distance is not None:
        d = np.asarray(distance, dtype=np.float64)
        limit = np.array(
            [
                DISTANCE_MARGIN * d[codes == c].max() + 1e-9 if (codes == c).any() else np.inf
                for c in range(k)
            ]
        )
    profile = ReferenceProfile(
        features=list(features),
        conditions=list(conditions),
        edges=edges,
        counts=counts,
        stats=stats,
        mix=np.bincount(codes[known], minlength=k).astype(np.int64),
        pca=pca,
        variance=float(variance),
        distance_limit=limit,
        source={"training_rows": int(known.sum()), **(source or {})},
    )
    if outputs is not None:
        profile.output = _output_reference(outputs, k, bins)
        if outputs.kind == "failure" and outputs.labels is not None:
            profile.calibrator = fit_isotonic(outputs.predictions, outputs.labels)
    # round-trip through the file format, so that the profile in memory is the one on disk
    profile = ReferenceProfile.from_dict(profile.to_dict())
    if held_out is not None and len(held_out.x):
        profile.null = fit_null(
            profile,
            held_out.x,
            held_out.codes,
            held_out.runs,
            distance=held_out.distance,
            split=held_out.split,
            **(null_options or {}),
        )
        profile = ReferenceProfile.from_dict(profile.to_dict())
    return profile
