"""How much the agent's alarm logic lowers false alarms, against raw per-window alarms.

Replays the per-window predictions of trained runs (``predictions_<split>.csv``:
asset, time, target, prediction; the same values a bundle gives on the device,
see tests/integration/test_agent_mqtt.py) through
:class:`plantml.agent.alarms.AlarmTracker` with a few settings, and counts per
split:

- **false alarms per asset-day**: raw per-window = every alarming window whose
  target is 0; raw episodes = runs of consecutive alarming windows with no
  positive window; tracker = raised alarms whose active span never touches a
  positive window. Asset-days = the sum over assets of (last - first time).
- **events detected**: events are runs of positive targets (failure within the
  horizon; an anomaly); detected when an alarm is active during the run.
- **detection delay**: first active alarm inside the run minus the run's start
  (median over detected events; 0 when an alarm raised earlier was still active);
- **normal time in alarm**: the share of normal windows during which an alarm is
  active (an alarm that never clears would "detect" everything; this shows it).

The settings are fixed in advance (not tuned on the test split); the raise
threshold is the run's own (``<split>/threshold`` in metrics.json: best F1 on
validation for failure, the calibrated quantile for anomaly scores); the clear
threshold (hysteresis) is the 90 % quantile of the validation predictions on
normal windows.

Reproduce (2 cores, about 4 min of training in all)::

    plantml-train experiment=synthetic_failure logger=csv trainer.max_epochs=8
    plantml-train experiment=skab_anomaly logger=csv trainer.max_epochs=10
    python scripts/bench_alarms.py --run outputs/synthetic_failure/runs/<time> \\
        --run outputs/skab_anomaly/runs/<time> --split test
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd

from plantml.agent.alarms import AlarmRule, AlarmTracker


def settings(period: float, raise_at: float, clear_at: float) -> list[tuple[str, AlarmRule | None]]:
    """The alarm settings compared; ``period`` is the seconds between windows."""
    return [
        ("raw per-window", None),
        ("raw episodes (k=1 of 1)", AlarmRule(raise_at, raise_at)),
        ("k=3 of 5", AlarmRule(raise_at, raise_at, k=3, n=5)),
        ("3 of 5 + hysteresis", AlarmRule(raise_at, clear_at, k=3, n=5)),
        (
            "3 of 5 + hysteresis + min 3 windows",
            AlarmRule(raise_at, clear_at, k=3, n=5, min_duration=3 * period),
        ),
        (
            "3 of 5 + hysteresis + min 3 + cooldown 20",
            AlarmRule(raise_at, clear_at, k=3, n=5, min_duration=3 * period, cooldown=20 * period),
        ),
    ]


def events_of(target: np.ndarray) -> list[tuple[int, int]]:
    """(start, end) index pairs of runs of positive targets (end inclusive)."""
    pos = np.r_[False, target > 0.5, False].astype(np.int8)
    edges = np.flatnonzero(np.diff(pos))
    return list(zip(edges[0::2], edges[1::2] - 1, strict=True))


def active_spans(rule: AlarmRule, t: np.ndarray, values: np.ndarray) -> list[tuple[int, int]]:
    """(raised index, cleared index or last) of each alarm the tracker raises."""
    tracker, spans, start = AlarmTracker(rule), [], None
    for i, (ti, v) in enumerate(zip(t, values, strict=True)):
        event = tracker.update(float(ti), float(v))
        if event is not None and event.kind == "raised":
            start = i
        elif event is not None and event.kind == "cleared":
            spans.append((start, i - 1))
            start = None
    if start is not None:
        spans.append((start, len(t) - 1))
    return spans


def score_asset(rule: AlarmRule | None, threshold: float, t, values, target) -> dict:
    runs = events_of(target)
    if rule is None:  # every alarming window is an alarm
        hits = np.flatnonzero(values >= threshold)
        false = int(np.sum(target[hits] < 0.5))
        spans = [(i, i) for i in hits]
    else:
        spans = active_spans(rule, t, values)
        false = sum(1 for a, b in spans if not (target[a : b + 1] > 0.5).any())
    active = np.zeros(len(t), dtype=bool)
    for a, b in spans:
        active[a : b + 1] = True
    delays = []
    for start, end in runs:
        touching = [max(a, start) for a, b in spans if a <= end and b >= start]
        if touching:
            delays.append(t[min(touching)] - t[start])
    normal = target < 0.5
    return {
        "false": false,
        "events": len(runs),
        "detected": len(delays),
        "delays": delays,
        "normal": int(normal.sum()),
        "normal_in_alarm": int((active & normal).sum()),
    }


def evaluate(frame: pd.DataFrame, raise_at: float, clear_at: float, period: float) -> list[dict]:
    out = []
    days = 0.0
    assets = []
    for _, part in frame.groupby("asset", sort=True):
        t = part["t"].to_numpy()
        days += (t[-1] - t[0]) / 86400.0
        assets.append((t, part["prediction"].to_numpy(), part["target"].to_numpy()))
    for name, rule in settings(period, raise_at, clear_at):
        total = {
            "false": 0,
            "events": 0,
            "detected": 0,
            "delays": [],
            "normal": 0,
            "normal_in_alarm": 0,
        }
        for t, values, target in assets:
            r = score_asset(rule, raise_at, t, values, target)
            for k in ("false", "events", "detected", "normal", "normal_in_alarm"):
                total[k] += r[k]
            total["delays"] += r["delays"]
        out.append(
            {
                "setting": name,
                "false_alarms": total["false"],
                "false_per_asset_day": total["false"] / max(days, 1e-9),
                "events": total["events"],
                "detected": total["detected"],
                "median_delay_s": float(np.median(total["delays"])) if total["delays"] else None,
                "normal_time_in_alarm": total["normal_in_alarm"] / max(total["normal"], 1),
                "asset_days": days,
            }
        )
    return out


def load(run: Path, split: str) -> pd.DataFrame:
    frame = pd.read_csv(run / f"predictions_{split}.csv")
    times = pd.to_datetime(frame["time"], errors="coerce", utc=True)
    if times.isna().any():
        raise SystemExit(f"{run}: the time column is not a timestamp; this benchmark needs one")
    frame["t"] = (times - pd.Timestamp(0, tz="UTC")).dt.total_seconds()
    return frame.sort_values(["asset", "t"], kind="stable")


def thresholds(run: Path, split: str) -> tuple[float, float]:
    """The run's raise threshold, and a clear threshold: the 90 % quantile of the validation
    predictions on normal windows (capped at the raise threshold), picked before the test split."""
    metrics = json.loads((run / "metrics.json").read_text())
    raise_at = metrics.get(f"{split}/threshold", metrics.get("val/threshold"))
    if raise_at is None:
        raise SystemExit(f"{run}/metrics.json has no threshold; is it a failure or anomaly run?")
    val = pd.read_csv(run / "predictions_val.csv")
    clear_at = float(np.quantile(val.loc[val["target"] < 0.5, "prediction"], 0.9))
    return float(raise_at), min(clear_at, float(raise_at))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--run", action="append", required=True, type=Path, help="a training run folder"
    )
    parser.add_argument(
        "--split", default="test", help="the predictions file to replay (test, val)"
    )
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    results = {}
    for run in args.run:
        frame = load(run, args.split)
        raise_at, clear_at = thresholds(run, args.split)
        period = float(frame.groupby("asset")["t"].diff().median())
        rows = evaluate(frame, raise_at, clear_at, period)
        results[str(run)] = {"raise": raise_at, "clear": clear_at, "period_s": period, "rows": rows}
        base = rows[0]["false_per_asset_day"]
        print(
            f"\n{run} ({args.split}): {frame['asset'].nunique()} assets, {rows[0]['asset_days']:.2f} "
            f"asset-days, a window every {period:g} s, raise {raise_at:.4g}, clear {clear_at:.4g}"
        )
        print(
            f"{'setting':42s} {'false/asset-day':>15s} {'vs raw':>7s} {'normal time in alarm':>21s} "
            f"{'detected':>9s} {'median delay':>13s}"
        )
        for r in rows:
            ratio = r["false_per_asset_day"] / base if base else float("nan")
            delay = (
                "-"
                if r["median_delay_s"] is None
                else f"{r['median_delay_s'] / period:.1f} windows"
            )
            print(
                f"{r['setting']:42s} {r['false_per_asset_day']:15.3f} {ratio:7.3f} "
                f"{r['normal_time_in_alarm'] * 100:20.2f}% {r['detected']:>4d}/{r['events']:<4d} {delay:>13s}"
            )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
