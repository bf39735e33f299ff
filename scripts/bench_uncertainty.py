"""Calibrated uncertainty, measured on units and pumps never used for fitting or calibration.

Part A, RUL intervals on C-MAPSS (default FD002: six operating conditions): trains
``experiment=cmapss_rul`` with 20 % of the units held out as a test split, fits split
conformal half-widths on the validation units (one for all conditions, and Mondrian: one
per condition) at several levels, and prints the coverage and mean width on the held-out
test units, overall and per condition. The run's own alarm trade-off (``lower bound <= 30
cycles`` against ``prediction <= 30``) is measured on the test units and plotted. Then the run is
exported (``export=int8``): the bundle's half-widths (fitted on validation with the INT8
model's own predictions) are applied by the edge runtime to the test windows, and that
coverage is printed too.

Parts B and C, failure probabilities: the synthetic pump fleet (``experiment=synthetic_failure``,
5 held-out test pumps) and a generated process table (``experiment=process_table`` with
``model.class_weight=balanced``, which inflates the probabilities; the last 20 % of the rows
are the test part): temperature and Platt scaling fitted on validation; expected
calibration error (10 bins) and Brier score on the test part before and after; the INT8
bundle (calibration folded into its graph) scored the same way.

The measurement in the README:

    OMP_NUM_THREADS=1 OMP_WAIT_POLICY=PASSIVE .venv/bin/python scripts/bench_uncertainty.py \
        --subset FD002 --model gbm --out outputs/bench/uncertainty
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

LEVELS = (0.8, 0.9, 0.95)


def _train(overrides: list[str], out: Path) -> dict:
    from plantml import api

    if (out / "metrics.json").is_file():  # resume: the run is done
        return json.loads((out / "metrics.json").read_text())
    return api.train(api.compose(overrides, output_dir=out))


def _export(run: Path, out: Path) -> str:
    from plantml import api

    return api.export(run, "int8", out, ["measure.repeats=20"])["bundle"]


def _codes(frame: pd.DataFrame, names: list[str]) -> np.ndarray:
    index = {n: i for i, n in enumerate(names)}
    return frame["condition"].map(lambda c: index.get(c, -1)).to_numpy(np.int64)


def _held_out(run: Path):
    """The run's held-out test windows (normalized), targets, condition codes and names,
    and the trained model's predictions on them (C-MAPSS training does not score its test
    units: the official test set is the source's test split)."""
    from plantml.evaluation.checkpoint import load_run
    from plantml.export import onnx as ox

    _, _, dm, task, _ = load_run(run / "checkpoints" / "best.ckpt", ["data.num_workers=0"])
    ds = dm.dataset("test")
    index = dm.data.windows["test"]
    x = ds.gather(np.arange(len(ds)))
    pred = ox.run_torch(ox.predictor(task), x)
    return x, index.targets, index.conditions, list(dm.data.condition_names), pred


def part_a(args, out: Path) -> list[str]:
    from plantml.edge import EdgeModel
    from plantml.evaluation.conformal import coverage_table, fit_half_widths
    from plantml.evaluation.uncertainty import decision_tradeoff

    run = out / f"rul_{args.subset.lower()}_{args.model}"
    overrides = [
        "experiment=cmapss_rul",
        f"data.subset={args.subset}",
        f"model={args.model}",
        "data.split_by.test_fraction=0.2",
        "conformal.level=0.9",
        "conformal.by=condition",
        "conformal.lead_time=30",
        "logger=csv",
        "callbacks.progress_bar.refresh_rate=0",
        "bootstrap=200",
        *args.overrides,
    ]
    metrics = _train(overrides, run)
    val = pd.read_csv(run / "predictions_val.csv")
    x, y, codes, names, pred = _held_out(run)
    test = pd.DataFrame({"prediction": pred, "target": y})
    test_codes = codes
    rmse = float(np.sqrt(np.mean((pred - y) ** 2)))
    lines = [
        f"A. RUL intervals, C-MAPSS {args.subset}, model={args.model}: calibrated on "
        f"{val['asset'].nunique()} validation units ({len(val)} windows), scored on the "
        f"{len(y)} windows of the held-out test units (test RMSE {rmse:.2f}, val RMSE "
        f"{metrics['val/rmse']:.2f})",
        "",
        "| level | half-widths | coverage overall | per condition (min - max) | "
        "worst gap to level | mean width |",
        "| --- | --- | ---: | --- | ---: | ---: |",
    ]
    for level in LEVELS:
        for by in ("none", "condition"):
            q, _ = fit_half_widths(
                val["prediction"], val["target"], _codes(val, names), len(names), level, by
            )
            t = coverage_table(test["prediction"], test["target"], test_codes, q, by, names)
            per = [v["coverage"] for v in t["by_condition"].values() if v["n"]]
            gap = max(abs(c - level) for c in [t["coverage"], *per])
            lines.append(
                f"| {level:g} | {'one' if by == 'none' else 'per condition'} | "
                f"{t['coverage']:.3f} | {min(per):.3f} - {max(per):.3f} | {gap:.3f} | "
                f"{t['width']:.1f} |"
            )
    cal = (val["prediction"].to_numpy(), val["target"].to_numpy(), _codes(val, names))
    decision = decision_tradeoff(
        pred, y, codes, cal, names, "condition", 0.9, 30.0, out / "alarm_tradeoff_test.png"
    )
    p, lb = decision["point"], decision["lower_bound"]
    lines += [
        "",
        f"alarm at a lead time of 30 cycles on the held-out units ({decision['failing_windows']} "
        "windows with RUL <= 30; a window is a false alarm when its RUL > 30):",
        f"- prediction <= 30: false-alarm rate {p['false_alarm_rate']:.3f}, missed "
        f"{p['missed_rate']:.3f}",
        f"- 90 % lower bound <= 30: false-alarm rate {lb['false_alarm_rate']:.3f}, missed "
        f"{lb['missed_rate']:.3f}",
        "- lower bound at level "
        + ", ".join(
            f"{k}: FA {v['false_alarm_rate']:.3f} / missed {v['missed_rate']:.3f}"
            for k, v in decision["levels"].items()
        ),
        f"- plot: {out / 'alarm_tradeoff_test.png'}",
    ]
    if not args.no_export:
        bundle = _export(run, out / "export")
        model = EdgeModel(bundle)
        pred = model.predict_windows(x)
        low, high = model.interval(pred, codes)
        inside = (y >= low) & (y <= high)
        per = [inside[codes == c].mean() for c in np.unique(codes)]
        spec = model.bundle.interval
        lines += [
            "",
            f"INT8 bundle ({Path(bundle).parent.name}, {model.bundle.model_path.stat().st_size / 1024:.1f} KB), "
            f"{100 * spec['level']:g} % intervals by the edge runtime on the test windows: "
            f"coverage {inside.mean():.3f} (per condition {min(per):.3f} - {max(per):.3f}), "
            f"mean width {(high - low).mean():.1f}, RMSE {np.sqrt(np.mean((pred - y) ** 2)):.2f}",
        ]
    return lines


def part_b(args, out: Path) -> list[str]:
    """The synthetic pump fleet (LSTM, balanced batches)."""
    overrides = ["experiment=synthetic_failure", "calibration.method=temperature"]
    return _calibration(
        out / "failure_synthetic",
        overrides,
        "B. synthetic fleet",
        "temperature",
        not args.no_export,
    )


def part_c(args, out: Path) -> list[str]:
    """A generated process table, gradient boosting with balanced class weights."""
    from plantml.data.sources.machining import machining_table

    table = out / "machining.csv"
    machining_table(10000, seed=0).to_csv(table, index=False)
    overrides = [
        "experiment=process_table",
        f"data.path={table.resolve()}",
        "data.condition_column=type",
        "model.class_weight=balanced",
        "calibration.method=platt",
    ]
    return _calibration(
        out / "failure_process", overrides, "C. process table (gbm, balanced)", "platt"
    )


def _calibration(
    run: Path, overrides: list[str], title: str, folded: str, export: bool = True
) -> list[str]:
    from plantml.edge import EdgeModel
    from plantml.evaluation.calibration import (
        apply_scaling,
        brier,
        expected_calibration_error,
        fit_scaling,
    )

    overrides = [*overrides, "logger=csv", "callbacks.progress_bar.refresh_rate=0", "bootstrap=200"]
    metrics = _train(overrides, run)
    val = pd.read_csv(run / "predictions_val.csv")
    test = pd.read_csv(run / "predictions_test.csv")
    p, y = test["prediction"].to_numpy(), test["target"].to_numpy()
    lines = [
        f"{title}: failure probabilities (test AUROC {metrics['test/auroc']:.3f}, "
        f"{int(y.sum())} positive of {len(y)} test windows):",
        "",
        "| probabilities | ECE (test) | Brier (test) | a | b |",
        "| --- | ---: | ---: | ---: | ---: |",
        f"| raw | {expected_calibration_error(p, y):.4f} | {brier(p, y):.4f} | | |",
    ]
    for method in ("temperature", "platt"):
        fit = fit_scaling(val["prediction"], val["target"], method)
        q = apply_scaling(p, fit["a"], fit["b"])
        lines.append(
            f"| {method} | {expected_calibration_error(q, y):.4f} | {brier(q, y):.4f} | "
            f"{fit['a']:.3f} | {fit['b']:.3f} |"
        )
    if export:
        bundle = _export(run, run.parent / "export" / run.name)
        model = EdgeModel(bundle)
        x, yt, _, _, _ = _held_out(run)
        q = model.predict_windows(x)
        cal = model.bundle.task["calibration"]
        lines.append(
            f"| INT8 bundle ({folded} in the graph) | {expected_calibration_error(q, yt):.4f} "
            f"| {brier(q, yt):.4f} | {cal['a']:.3f} | {cal['b']:.3f} |"
        )
    lines.append(f"\nreliability diagram: {run / 'reliability_test.png'}")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subset", default="FD002")
    parser.add_argument("--model", default="gbm", help="model of part A (gbm, lstm, ...)")
    parser.add_argument("--out", default="outputs/bench/uncertainty")
    parser.add_argument("--parts", nargs="+", default=["a", "b", "c"])
    parser.add_argument("--no-export", action="store_true")
    parser.add_argument("overrides", nargs="*", help="more plantml-train overrides for part A")
    args = parser.parse_args(argv)
    from plantml.cli.common import quiet_libraries

    quiet_libraries()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    lines: list[str] = []
    if "a" in args.parts:
        lines += [*part_a(args, out), ""]
    if "b" in args.parts:
        lines += [*part_b(args, out), ""]
    if "c" in args.parts:
        lines += part_c(args, out)
    text = "\n".join(lines)
    print(text)
    (out / f"results_{'_'.join(args.parts)}_{args.model}.md").write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
