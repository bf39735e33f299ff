"""The report's figures: drift heatmap over time, condition mix, outputs, performance.

Each function takes the report dict (:func:`plantml.monitoring.analysis.run_checks`)
and writes one PNG; matplotlib with the Agg backend.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from plantml.monitoring.profile import ReferenceProfile
from plantml.monitoring.sinks import show_time


def _labels(report: dict[str, Any]) -> list[str]:
    kind = report["bundle"]["time_kind"]
    return [show_time(c["time"], kind)[:16] for c in report["checks"]]


def _ticks(ax, labels: list[str], limit: int = 12) -> None:
    step = max(1, len(labels) // limit)
    ax.set_xticks(range(0, len(labels), step))
    ax.set_xticklabels(labels[::step], rotation=40, ha="right", fontsize=7)


def drift_heatmap(report: dict[str, Any], path: Path) -> Path | None:
    """Rows: condition x signal; columns: chunks; colour: the calibrated drift z-score."""
    checks = [c for c in report["checks"] if c.get("z") is not None]
    if not checks:
        return None
    blocks = checks[0]["drift"]["blocks"][:-2]  # the conditions (not unseen, all)
    signals = checks[0]["drift"]["signals"]
    z = np.array(
        [
            [[np.nan if v is None else v for v in row] for row in c["z"][: len(blocks)]]
            for c in checks
        ]
    )
    z = z.transpose(1, 2, 0).reshape(len(blocks) * len(signals), len(checks))
    flagged = np.zeros_like(z, dtype=bool)
    index = {
        (b, s): i * len(signals) + j for i, b in enumerate(blocks) for j, s in enumerate(signals)
    }
    for t, c in enumerate(checks):
        for d in c["verdict"]["input_drift"]:
            if (d["condition"], d["signal"]) in index:
                flagged[index[(d["condition"], d["signal"])], t] = True
    height = max(4.0, 0.12 * z.shape[0] + 1.5)
    fig, ax = plt.subplots(figsize=(max(7.0, 0.25 * len(checks) + 4), height))
    im = ax.imshow(
        np.clip(z, -3, 8), aspect="auto", cmap="magma", vmin=-3, vmax=8, interpolation="nearest"
    )
    ys, xs = np.nonzero(flagged)
    ax.scatter(
        xs,
        ys,
        marker="s",
        s=12,
        facecolors="none",
        edgecolors="cyan",
        linewidths=0.8,
        label="alarm (BH)",
    )
    names = [f"{b[:22]} | {s}" for b in blocks for s in signals]
    ax.set_yticks(range(len(names)))
    ax.set_yticklabels(names, fontsize=5)
    _ticks(ax, _labels({**report, "checks": checks}))
    fig.colorbar(im, ax=ax, label="drift z-score (calibrated, per chunk)")
    ax.set_title("Input drift per operating condition x feature over time")
    if flagged.any():
        ax.legend(loc="upper left", fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def condition_mix(report: dict[str, Any], path: Path) -> Path:
    """Share of rows per condition per chunk (stacked), unseen on top; training shares dashed."""
    checks = report["checks"]
    conditions = report["bundle"]["conditions"]
    shares = np.array(
        [
            [np.nan if v is None else v for v in (c["drift"]["mix"]["current_shares"] or [])]
            or [np.nan] * len(conditions)
            for c in checks
        ],
        dtype=float,
    )
    rows = np.array([max(c["rows"], 1) for c in checks], dtype=float)
    unseen = np.array([c["drift"]["mix"]["unseen_rows"] for c in checks], dtype=float) / rows
    shares = np.nan_to_num(shares) * (1 - unseen)[:, None]
    fig, ax = plt.subplots(figsize=(9, 4))
    x = np.arange(len(checks))
    ax.stackplot(x, *shares.T, np.maximum(unseen, 0), labels=[*conditions, "unseen"], alpha=0.85)
    ref = checks[0]["drift"]["mix"]["reference_shares"] if checks else []
    for level in np.cumsum(ref)[:-1]:
        ax.axhline(level, color="k", linestyle="--", linewidth=0.7)
    ax.set_ylim(0, 1)
    ax.set_ylabel("share of rows")
    _ticks(ax, _labels(report))
    ax.set_title("Condition mix over time (dashed: training mix)")
    ax.legend(fontsize=6, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def output_distribution(
    report: dict[str, Any], profile: ReferenceProfile, out_counts: np.ndarray, path: Path
) -> Path | None:
    """Per condition: the outputs' histogram in the range against validation (reference bins)."""
    ref = profile.output
    if ref is None or out_counts.sum() == 0:
        return None
    k = profile.n_conditions
    cols = min(3, k + 1)
    rows = int(np.ceil((k + 1) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 2.8 * rows), squeeze=False)
    names = [*profile.conditions, "all"]
    for b in range(k + 1):
        ax = axes.flat[b]
        sketch_block = b if b < k else k + 1
        edges = ref.edges[b]
        centers = np.arange(len(edges) + 1)
        for counts, label, style in (
            (ref.counts[b], f"validation ({ref.split})", "--"),
            (out_counts[sketch_block], "monitored range", "-"),
        ):
            total = counts.sum()
            if total:
                ax.step(centers, counts / total, where="mid", linestyle=style, label=label)
        ax.set_title(names[b][:40], fontsize=8)
        ax.set_xticks(centers[:: max(1, len(centers) // 5)])
        ax.set_xticklabels(
            [f"≤{e:.3g}" for e in np.r_[edges, np.inf][:: max(1, len(centers) // 5)]], fontsize=6
        )
    for ax in list(axes.flat)[k + 1 :]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=7)
    fig.suptitle(f"Output distribution ({ref.name}) per condition, reference quantile bins")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def performance(report: dict[str, Any], path: Path) -> Path | None:
    """Realized performance per period (when labels arrived), the label-free estimate, coverage."""
    perf = report.get("performance")
    if not perf or not perf.get("scored") or not perf.get("over_time"):
        return None
    rows = perf["over_time"]
    kind = perf["kind"]
    x = np.arange(len(rows))
    fig, ax = plt.subplots(figsize=(9, 4))
    metrics = ("rmse",) if kind == "rul" else ("precision", "recall", "f1")
    for m in metrics:
        ax.plot(
            x,
            [np.nan if r.get(m) is None else r[m] for r in rows],
            marker="o",
            label=f"{m} (labels)",
        )
    estimated = [c["figures"].get("estimated_f1") for c in report["checks"]]
    if any(e is not None for e in estimated) and len(estimated) == len(rows):
        ax.plot(
            x,
            [np.nan if e is None else e for e in estimated],
            "k--",
            label="F1 estimated (no labels)",
        )
    ax2 = ax.twinx()
    coverage = [r["labeled"] / max(r["predictions"], 1) for r in rows]
    ax2.bar(x, coverage, alpha=0.15, color="gray", label="share labeled")
    ax2.set_ylim(0, 1)
    ax2.set_ylabel("share of predictions with a label")
    delay = perf.get("label_delay", {}).get("median")
    unit = "s" if report["bundle"]["time_kind"] == "datetime" else "cycles"
    title = "Performance over time"
    if delay is not None:
        title += f" (median label delay {delay:.4g} {unit})"
    ax.set_title(title)
    kind_t = report["bundle"]["time_kind"]
    _ticks(ax, [show_time(r["start"], kind_t)[:16] for r in rows])
    ax.legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
