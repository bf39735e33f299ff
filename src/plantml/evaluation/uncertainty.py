"""Uncertainty at the end of an evaluation: conformal RUL intervals and calibrated probabilities.

Run by :func:`plantml.evaluation.results.finish_evaluation` when the run's config asks:

- ``conformal.level`` (RUL): half-widths fitted on the validation windows (Mondrian per
  condition with ``conformal.by=condition``); coverage and width measured on units never
  used for calibration (the test split when there is one, else repeated half-splits of
  the validation units); ``rul_low`` / ``rul_high`` added to the predictions; with
  ``conformal.lead_time`` the alarm rule "lower bound <= lead time" against "prediction
  <= lead time", with the false-alarm / missed-failure trade-off plotted.
- ``calibration.method`` (failure): temperature or Platt scaling fitted on validation;
  expected calibration error and Brier score before and after on the held-out split,
  reliability diagrams, ``probability_calibrated`` added to the predictions.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from plantml.core.intervals import interval_bounds
from plantml.evaluation.calibration import (
    apply_scaling,
    brier,
    expected_calibration_error,
    fit_scaling,
    reliability,
)
from plantml.evaluation.conformal import (
    check_options,
    coverage_table,
    crossfit_coverage,
    fit_half_widths,
)

log = logging.getLogger(__name__)
LEVELS = (0.5, 0.7, 0.8, 0.9, 0.95, 0.99)  # trade-off markers


def _arrays(out: dict) -> tuple[np.ndarray, ...]:
    return tuple(out[k].numpy() for k in ("pred", "y", "condition", "asset"))


def _held_out_split(task) -> str | None:
    """The scored split other than val with labels (test), if any."""
    for split, out in task.predictions.items():
        if split != "val" and len(out["y"]) and bool(np.isfinite(out["y"].numpy()).all()):
            return split
    return None


def _codes(frame: pd.DataFrame, names: list[str]) -> np.ndarray:
    index = {n: i for i, n in enumerate(names)}
    return frame["condition"].map(lambda c: index.get(c, -1)).to_numpy(np.int64)


def _figure(**kwargs):
    from matplotlib.figure import Figure

    return Figure(**kwargs)


def alarm_rates(alarm: np.ndarray, failing: np.ndarray) -> dict:
    """False-alarm rate (alarms among windows not failing) and missed rate (failing, no alarm)."""
    ok = ~failing
    return {
        "false_alarm_rate": float(alarm[ok].mean()) if ok.any() else None,
        "missed_rate": float((~alarm[failing]).mean()) if failing.any() else None,
        "alarms": int(alarm.sum()),
    }


def decision_tradeoff(
    pred, target, codes, cal: tuple, names: list[str], by: str, level: float, lead: float, path
) -> dict:
    """Alarm "lower bound <= lead" against "prediction <= lead" on held-out windows; plot.

    A window is *failing* when its true RUL is at most ``lead``. The curve moves the
    threshold on the point prediction; the markers are the interval rule at several levels
    (each level's half-widths fitted on the calibration windows ``cal``).
    """
    failing = target <= lead
    n_cond = len(names)
    rules = {"point": alarm_rates(pred <= lead, failing)}
    markers = []
    for lv in sorted({*LEVELS, level}):
        q, _ = fit_half_widths(*cal, n_cond, lv, by)
        low, _ = interval_bounds(pred, codes, q, by == "condition")
        rates = alarm_rates(low <= lead, failing)
        markers.append((lv, rates))
        if lv == level:
            rules["lower_bound"] = rates
    thresholds = np.linspace(0, max(float(pred.max()), lead) + 1, 200)
    curve = np.array(
        [list(alarm_rates(pred <= t, failing).values())[:2] for t in thresholds], dtype=float
    )
    fig = _figure(figsize=(5.5, 4.2))
    ax = fig.subplots()
    ax.plot(curve[:, 0], curve[:, 1], color="k", linewidth=1, label="prediction <= t (all t)")
    p = rules["point"]
    ax.scatter(
        [p["false_alarm_rate"]],
        [p["missed_rate"]],
        color="C0",
        zorder=3,
        label=f"prediction <= {lead:g}",
    )
    for lv, rates in markers:
        ax.scatter(
            [rates["false_alarm_rate"]],
            [rates["missed_rate"]],
            color="C3",
            marker="v",
            zorder=3,
            s=18 + 30 * (lv == level),
        )
        ax.annotate(
            f"{lv:g}",
            (rates["false_alarm_rate"], rates["missed_rate"]),
            fontsize=7,
            xytext=(3, 3),
            textcoords="offset points",
        )
    ax.scatter([], [], color="C3", marker="v", label=f"lower bound <= {lead:g} (interval level)")
    ax.set_xlabel(f"false-alarm rate (windows with RUL > {lead:g})")
    ax.set_ylabel(f"missed failures (windows with RUL <= {lead:g})")
    ax.set_xlim(-0.02, 1.02)
    ax.set_ylim(-0.02, 1.02)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    rules["levels"] = {f"{lv:g}": rates for lv, rates in markers}
    return {"lead_time": float(lead), "failing_windows": int(failing.sum()), **rules}


def conformal_results(task, datamodule, options: dict, frames: dict, output_dir: Path | None):
    """Metrics to add and files written for ``conformal`` options on a RUL task."""
    level, by = check_options(options.get("level"), str(options.get("by") or "none"))
    if "val" not in task.predictions:
        return {}, []
    names = list(datamodule.data.condition_names)
    pred, y, codes, assets = _arrays(task.predictions["val"])
    q, notes = fit_half_widths(pred, y, codes, len(names), level, by)
    for note in notes:
        log.warning("conformal: %s", note)
    split = _held_out_split(task)
    if split is not None:
        p, t, c, _ = _arrays(task.predictions[split])
        cov = coverage_table(p, t, c, q, by, names)
        cov["method"] = "calibrated on val, scored on held-out units"
    elif len(np.unique(assets)) >= 4:
        split, (p, t, c) = "val", (pred, y, codes)
        cov = crossfit_coverage(pred, y, codes, assets, len(names), level, by, names)
        cov["method"] = "val units split in halves 20 times: each half calibrated on the other"
    else:
        split, (p, t, c), cov = "val", (pred, y, codes), None
        notes.append(
            f"{len(np.unique(assets))} validation units and no scored test split: coverage "
            "on units not used for calibration cannot be measured (hold out test units with "
            "data.split_by.test_fraction, or validate on more units)"
        )
        log.warning("conformal: %s", notes[-1])
    block = {
        "level": level,
        "by": by,
        "half_width": {**{n: float(q[i]) for i, n in enumerate(names)}, "global": float(q[-1])},
        "calibration": {"split": "val", "windows": len(y), "units": len(set(assets))},
        "coverage": {split: cov} if cov else {},
        "notes": notes,
    }
    metrics: dict = {"conformal": block}
    if cov:
        metrics[f"{split}/interval_coverage"] = cov["coverage"]
        metrics[f"{split}/interval_width"] = cov["width"]
    written = []
    for frame in frames.values():
        low, high = interval_bounds(
            frame["prediction"].to_numpy(), _codes(frame, names), q, by == "condition"
        )
        frame["rul_low"], frame["rul_high"] = low, high
    lead = options.get("lead_time")
    if lead is not None and output_dir is not None:
        path = output_dir / f"alarm_tradeoff_{split}.png"
        block["decision"] = decision_tradeoff(
            p, t, c, (pred, y, codes), names, by, level, float(lead), path
        )
        block["decision"]["scored_on"] = (
            split if split != "val" else "val (in-sample: the half-widths were fitted on it)"
        )
        written.append(path)
    return metrics, written


def plot_reliability(p_before, p_after, y, bins: int, path: Path, title: str) -> None:
    """Reliability diagram: observed failure frequency against mean probability per bin."""
    fig = _figure(figsize=(5.0, 4.4))
    ax = fig.subplots()
    ax.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=0.8, label="perfect")
    for p, label, color in ((p_before, "raw", "C0"), (p_after, "calibrated", "C3")):
        r = reliability(p, y, bins)
        used = r["count"] > 0
        ece = expected_calibration_error(p, y, bins)
        ax.plot(
            r["confidence"][used],
            r["frequency"][used],
            marker="o",
            color=color,
            label=f"{label} (ECE {ece:.3f})",
        )
    ax.set_xlabel("mean predicted probability (bin)")
    ax.set_ylabel("observed failure frequency")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def calibration_results(task, options: dict, frames: dict, output_dir: Path | None):
    """Metrics to add and files written for ``calibration`` options on a failure task."""
    if "val" not in task.predictions:
        return {}, []
    bins = int(options.get("bins") or 10)
    pred, y, _, _ = _arrays(task.predictions["val"])
    fit = fit_scaling(pred, y, str(options["method"]))
    split = _held_out_split(task) or "val"
    p, t, _, _ = _arrays(task.predictions[split])
    after = apply_scaling(p, fit["a"], fit["b"])
    block = {
        **fit,
        "fitted_on": "val",
        "scored_on": split if split != "val" else "val (in-sample: no held-out split)",
        "bins": bins,
        "ece_before": expected_calibration_error(p, t, bins),
        "ece_after": expected_calibration_error(after, t, bins),
        "brier_before": brier(p, t),
        "brier_after": brier(after, t),
    }
    for frame in frames.values():
        frame["probability_calibrated"] = apply_scaling(
            frame["prediction"].to_numpy(), fit["a"], fit["b"]
        )
    written = []
    if output_dir is not None:
        path = output_dir / f"reliability_{split}.png"
        plot_reliability(p, after, t, bins, path, f"{split}: {fit['method']} scaling fitted on val")
        written.append(path)
    metrics = {
        f"{split}/ece": block["ece_before"],
        f"{split}/ece_calibrated": block["ece_after"],
        "calibration": block,
    }
    return metrics, written


def uncertainty_results(task, datamodule, run_cfg, frames: dict, output_dir: Path | None):
    """(metrics to add, files written) for the run config's ``conformal`` / ``calibration``."""
    if run_cfg is None:
        return {}, []
    conformal = dict(run_cfg.get("conformal") or {})
    calibration = dict(run_cfg.get("calibration") or {})
    if task.kind == "rul" and conformal.get("level") is not None:
        return conformal_results(task, datamodule, conformal, frames, output_dir)
    if task.kind == "failure" and calibration.get("method"):
        return calibration_results(task, calibration, frames, output_dir)
    return {}, []
