"""Drift of one chunk of production data against the reference, from its sketch (numpy only).

:func:`chunk_drift` turns a :class:`~plantml.monitoring.sketch.ProfileSketch`
into statistics per block (condition, unseen, all) and signal (feature,
multivariate): PSI, KS (distance and asymptotic p-value), Wasserstein-1 in
units of the reference std, the mean shift in reference stds, the std ratio
and the missing rate; the condition mix against the training mix (PSI,
chi-square) and the share of rows in unseen conditions; and the output
distribution and alarm rate per condition.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from plantml.monitoring.profile import ReferenceProfile, round_floats
from plantml.monitoring.sketch import ProfileSketch
from plantml.monitoring.stats import chi_square, ks, ks_pvalue, psi, shares, wasserstein

INPUT_METRICS = (
    "psi",
    "ks",
    "ks_p",
    "wasserstein",
    "mean_shift",
    "std_ratio",
    "missing_rate",
)


@dataclass
class ChunkDrift:
    """Statistics of one chunk: ``input[metric]`` is (K+2, S), blocks x signals.

    Blocks are ``conditions + ["unseen", "all"]``; "unseen" rows are compared
    with the pooled reference, as are "all" rows (the condition-blind view).
    """

    blocks: list[str]
    signals: list[str]
    rows: np.ndarray  # (K+2,)
    n: np.ndarray  # (K+2, S) non-missing values
    input: dict[str, np.ndarray]
    mix: dict[str, Any]
    output: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "blocks": self.blocks,
            "signals": self.signals,
            "rows": self.rows.tolist(),
            "n": self.n.tolist(),
            "input": {k: round_floats(v) for k, v in self.input.items()},
            "mix": {
                k: round_floats(v) if isinstance(v, np.ndarray) else v for k, v in self.mix.items()
            },
            "output": {
                k: round_floats(v) if isinstance(v, np.ndarray) else v
                for k, v in self.output.items()
            },
        }


def _ref_index(profile: ReferenceProfile) -> np.ndarray:
    """Profile block behind each sketch block: conditions, then pooled for unseen and all."""
    k = profile.n_conditions
    return np.r_[np.arange(k), k, k]


def input_drift(profile: ReferenceProfile, sketch: ProfileSketch) -> dict[str, np.ndarray]:
    """Per-block, per-signal statistics (K+2, S) of the sketch's rows against the reference."""
    ref = _ref_index(profile)
    r_counts, r_stats = profile.counts[ref], {k: v[ref] for k, v in profile.stats.items()}
    m = sketch.moments
    std_ref = profile.std_floor[ref]
    with np.errstate(invalid="ignore", divide="ignore"):
        w = wasserstein(
            r_counts,
            r_stats["min"],
            r_stats["max"],
            sketch.counts,
            m.lo,
            m.hi,
            profile.edges[ref],
            r_stats["tail_mean"],
            sketch.tail_means(),
        )
        total = m.n + sketch.missing
        out = {
            "psi": np.where(m.n > 0, psi(r_counts, sketch.counts), np.nan),
            "ks": np.where(m.n > 0, ks(r_counts, sketch.counts), np.nan),
            "ks_p": ks_pvalue(ks(r_counts, sketch.counts), r_stats["n"], m.n),
            "wasserstein": w / std_ref,
            "mean_shift": np.where(m.n > 0, (m.mean - r_stats["mean"]) / std_ref, np.nan),
            "std_ratio": np.where(m.n > 0, m.std / std_ref, np.nan),
            "missing_rate": np.where(total > 0, sketch.missing / np.maximum(total, 1), np.nan),
        }
    return out


def condition_mix(profile: ReferenceProfile, sketch: ProfileSketch) -> dict[str, Any]:
    """The chunk's condition mix against training: shares, PSI, chi-square, unseen share."""
    k = profile.n_conditions
    current = sketch.rows[:k]
    ref_shares = shares(profile.mix)
    stat, dof = chi_square(ref_shares, current)
    total = int(sketch.rows[-1])
    return {
        "reference_shares": ref_shares,
        "current_rows": current.astype(np.int64),
        "current_shares": shares(current) if current.sum() else np.full(k, np.nan),
        "psi": float(psi(profile.mix, current)) if current.sum() and k > 1 else 0.0,
        "chi2": stat,
        "dof": dof,
        "unseen_rows": int(sketch.rows[k]),
        "unseen_fraction": float(sketch.rows[k] / total) if total else float("nan"),
    }


def output_drift(profile: ReferenceProfile, sketch: ProfileSketch) -> dict[str, Any]:
    """Output distribution and alarm rate per block (K+2,) against the validation outputs."""
    out_ref = profile.output
    m = sketch.out_moments
    if out_ref is None:
        return {"n": m.n.astype(np.int64), "reference": False}
    ref = _ref_index(profile)
    r_counts = out_ref.counts[ref]
    std_ref = np.maximum(np.nan_to_num(out_ref.stats["std"][ref]), 1e-9)
    with np.errstate(invalid="ignore", divide="ignore"):
        result = {
            "reference": True,
            "n": m.n.astype(np.int64),
            "psi": np.where(m.n > 0, psi(r_counts, sketch.out_counts), np.nan),
            "ks": np.where(m.n > 0, ks(r_counts, sketch.out_counts), np.nan),
            "wasserstein": wasserstein(
                r_counts,
                out_ref.stats["min"][ref],
                out_ref.stats["max"][ref],
                sketch.out_counts,
                m.lo,
                m.hi,
                out_ref.edges[ref],
                out_ref.stats["tail_mean"][ref],
                sketch.tail_means(output=True),
            )
            / std_ref,
            "mean": np.where(m.n > 0, m.mean, np.nan),
            "reference_mean": out_ref.stats["mean"][ref],
            "mean_shift": np.where(
                m.n > 0, (m.mean - out_ref.stats["mean"][ref]) / std_ref, np.nan
            ),
        }
        if out_ref.alarms is not None:
            result["alarm_rate"] = np.where(
                sketch.alarm_n > 0, sketch.alarms / np.maximum(sketch.alarm_n, 1), np.nan
            )
            result["reference_alarm_rate"] = out_ref.alarm_rate[ref]
    return result


def chunk_drift(profile: ReferenceProfile, sketch: ProfileSketch) -> ChunkDrift:
    """Everything :mod:`plantml.monitoring` measures about one chunk's sketch."""
    if sketch.profile.sha256 != profile.sha256:
        from plantml.monitoring.errors import SketchError

        raise SketchError("the sketch was made on another reference profile; pass its bundle")
    return ChunkDrift(
        blocks=list(sketch.blocks),
        signals=profile.signals,
        rows=sketch.rows.copy(),
        n=sketch.moments.n.copy(),
        input=input_drift(profile, sketch),
        mix=condition_mix(profile, sketch),
        output=output_drift(profile, sketch),
    )
