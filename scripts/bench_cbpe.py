"""Performance estimated before labels arrive, against the realized performance on held-out pumps.

A trained failure model (``plantml-train``, the default synthetic fleet) scores
its validation and held-out test windows. As ``plantml-export`` does for the
reference profile, an isotonic calibrator is fitted on the validation outputs;
on the test pumps, per day of window ends, the precision, recall and F1 expected
from the calibrated probabilities alone (confidence-based performance
estimation, :mod:`plantml.monitoring.estimate`) are compared with the values the
labels give once they are known (failure within 24 h). Also shown: the same
estimate from the raw, uncalibrated probabilities.

Reproduce (2 CPU cores): train, then point the script at the run's checkpoint::

    .venv/bin/plantml-train logger=csv
    .venv/bin/python scripts/bench_cbpe.py --ckpt outputs/synthetic_failure/runs/<time>/checkpoints/best.ckpt
"""

from __future__ import annotations

import argparse
import json

import numpy as np

from plantml.monitoring.estimate import (
    calibrate,
    expected_performance,
    fit_isotonic,
    realized_performance,
)

METRICS = ("precision", "recall", "f1")


def scores(ckpt: str, period: str):
    """Predictions, targets and window-end periods of the validation and test windows."""
    import pandas as pd

    from plantml.evaluation.checkpoint import load_run
    from plantml.export.onnx import predictor, run_torch

    _, _, datamodule, task, _ = load_run(ckpt, ["data.num_workers=0"])
    model = predictor(task)
    out = {}
    for split in ("val", "test"):
        data = datamodule.prepared(split)
        index = data.windows[split]
        windows = datamodule.dataset(split).gather(np.arange(len(index)))
        times = pd.to_datetime(data.frame[data.table.time_column].to_numpy()[index.ends])
        out[split] = {
            "p": run_torch(model, windows),
            "y": index.targets > 0.5,
            "period": np.asarray(times.floor(period).astype("int64")),
        }
    return out, task.threshold_value()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ckpt", required=True, help="a failure run's checkpoint")
    parser.add_argument("--period", default="1D", help="chunk of window-end time (pandas offset)")
    parser.add_argument(
        "--min-positives", type=int, default=5, help="periods with fewer are pooled out"
    )
    parser.add_argument("--out", default=None, help="write the per-period table as JSON")
    args = parser.parse_args()
    data, threshold = scores(args.ckpt, args.period)
    val, test = data["val"], data["test"]
    calibrator = fit_isotonic(val["p"], val["y"])
    p_cal = calibrate(test["p"], calibrator)
    alarms = test["p"] >= threshold
    rows = []
    for period in np.unique(test["period"]):
        sel = test["period"] == period
        if test["y"][sel].sum() < args.min_positives:
            continue
        real = realized_performance(test["y"][sel], alarms[sel])
        est = expected_performance(p_cal[sel], alarms[sel])
        raw = expected_performance(np.clip(test["p"][sel], 0, 1), alarms[sel])
        rows.append(
            {"period": int(period), "windows": int(sel.sum()), "real": real, "est": est, "raw": raw}
        )
    overall = {
        "real": realized_performance(test["y"], alarms),
        "est": expected_performance(p_cal, alarms),
        "raw": expected_performance(np.clip(test["p"], 0, 1), alarms),
    }
    print(
        f"threshold {threshold:.3f}; {len(test['p'])} test windows, {int(test['y'].sum())} positive; "
        f"calibrator of {len(calibrator['x'])} knots from {len(val['p'])} validation windows"
    )
    print(f"{'':10} {'realized':>9} {'estimated':>9} {'raw probs':>9}")
    for m in METRICS:
        print(f"{m:10} {overall['real'][m]:9.3f} {overall['est'][m]:9.3f} {overall['raw'][m]:9.3f}")
    print(
        f"\nper {args.period} with >= {args.min_positives} positives ({len(rows)} periods): "
        "median |estimated - realized| (calibrated / raw)"
    )
    summary = {}
    for m in METRICS:
        err = [
            abs(r["est"][m] - r["real"][m])
            for r in rows
            if np.isfinite(r["real"][m]) and np.isfinite(r["est"][m])
        ]
        err_raw = [
            abs(r["raw"][m] - r["real"][m])
            for r in rows
            if np.isfinite(r["real"][m]) and np.isfinite(r["raw"][m])
        ]
        summary[m] = {
            "calibrated": float(np.median(err)) if err else None,
            "raw": float(np.median(err_raw)) if err_raw else None,
        }
        print(f"{m:10} {summary[m]['calibrated']:.3f} / {summary[m]['raw']:.3f}")
    if args.out:
        with open(args.out, "w") as f:
            json.dump(
                {"overall": overall, "periods": rows, "median_abs_error": summary},
                f,
                indent=1,
                default=float,
            )


if __name__ == "__main__":
    main()
