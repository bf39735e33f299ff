"""Monitoring benchmark: false alarms, detection delay, condition-mix shift, condition-blind baseline, cost.

For each dataset the reference profile is built as ``plantml-export`` builds it
(training split; the null model from the validation split), and production is
replayed from assets held out of both (``data.split_by.test_fraction=0.2``) as a
fleet in steady state: ``--active`` assets at a time at random points of their
lives, each giving ``--rows-per-asset`` rows to every chunk, a fresh asset
taking the place of one whose life ended. Every chunk is checked by the default
per-condition rule (calibrated CUSUM-Shewhart test, Benjamini-Hochberg at
``--alpha`` across condition x signal, horizon ``--horizon`` chunks) and, side by
side on the same chunks, by the condition-blind baseline: the same test on all
rows pooled (what common tools do by default).

1. False alarms: ``--replays`` in-control replays of ``--chunks`` chunks; the
   fraction with any input-drift alert.
2. Detection delay: drift injected at chunk ``--start`` into one random feature
   (sensor bias of 0.5 and 1 reference std, a stuck sensor, a slow gain drift of
   1 std per 20 chunks), in every condition, and a 1-std bias inside one condition
   only; the median number of chunks from the injection to the first alert.
3. Condition-mix shift only (FD002): from chunk ``--start`` on, rows of four of
   the six conditions are kept with probability 0.15; no row changes.
4. Cost: rows/s of sketch updates and checks, sketch and profile size.

The synthetic fleet has 150 pumps (30 held out) and no simulated sensor faults
by default: its pumps run for the whole record and differ a lot from each other,
so a small held-out fleet differs from the training fleet by itself
(``--synthetic-assets 24 --synthetic-faults`` shows what that does).

Reproduce (2 CPU cores, C-MAPSS in ../shared/data; about an hour):

    OMP_NUM_THREADS=1 .venv/bin/python scripts/bench_monitoring.py --datasets FD002 synthetic \\
        --replays 200 --delay-replays 60 --chunks 40 --out outputs/bench-monitoring
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from plantml import api
from plantml.export.profile import monitoring_arrays
from plantml.monitoring.monitor import Monitor
from plantml.monitoring.reference import HeldOut, build_profile
from plantml.monitoring.replay import replay
from plantml.monitoring.rules import load_rules
from plantml.monitoring.scenarios import Drift, Pool
from plantml.monitoring.sketch import ProfileSketch

DELAYS = [("bias", 0.5), ("bias", 1.0), ("stuck", 1.0), ("gain", 1.0)]


def prepare(dataset: str, args):
    """Prepared data (train / val / held-out assets) of a dataset."""
    if dataset.startswith("FD"):
        overrides = [
            "experiment=cmapss_rul",
            f"data.subset={dataset}",
            "data.split_by.test_fraction=0.2",
        ]
        if args.data:
            overrides.append(f"data.root={Path(args.data) / 'cmapss'}")
    else:
        overrides = ["experiment=synthetic_failure", f"data.n_assets={args.synthetic_assets}"]
        if not args.synthetic_faults:
            overrides.append("+data.source.faults=false")
    cfg = api.compose(overrides, output_dir="outputs/bench-monitoring/compose")
    dm = api.datamodule(cfg)
    dm.setup()
    return dm.data


def rules(alpha: float, horizon: int):
    common = {"metric": "input_drift", "alpha": alpha, "horizon": horizon}
    return load_rules(
        [
            {"name": "per_condition", **common},
            {"name": "pooled", "view": "pooled", **common},
            {"name": "mix", "metric": "mix_psi", "above": 0.1, "severity": "info"},
        ]
    )


class Bench:
    def __init__(self, data, args):
        self.args = args
        a = monitoring_arrays(data)
        x, codes, distance, runs = a["x"], a["codes"], a["distance"], a["runs"]

        def part(mask):
            return x[mask], codes[mask], None if distance is None else distance[mask]

        start = time.perf_counter()
        tx, tc, td = part(a["train"])
        vx, vc, vd = part(a["val"])
        self.profile = build_profile(
            list(data.feature_names),
            list(data.condition_names),
            tx,
            tc,
            distance=td,
            held_out=HeldOut(vx, vc, runs[a["val"]], vd),
        )
        self.build_seconds = time.perf_counter() - start
        hx, hc, hd = part(a["test"])
        self.pool = Pool(hx, hc, runs[a["test"]], hd)
        self.rules = rules(args.alpha, args.horizon)
        std = self.profile.stats["std"][:-1]
        mean = np.abs(self.profile.stats["mean"][-1])
        self.varying = [
            j
            for j in range(len(data.feature_names))
            if np.nanmin(std[:, j]) > 1e-6 * mean[j] + 1e-9
        ]
        self.held_out_assets = len(np.unique(runs[a["test"]]))

    def replay(self, seed: int, drift: Drift | None = None, thin: dict | None = None):
        a = self.args
        return replay(
            self.profile,
            self.rules,
            self.pool,
            seed,
            a.chunks,
            a.active,
            a.rows_per_asset,
            drift=drift,
            thin=thin,
            start=a.start,
        )

    def far(self, seeds: range) -> dict:
        runs = [self.replay(s) for s in seeds]
        return {
            "replays": len(runs),
            "far_per_condition": float(np.mean([r.alerted("per_condition") for r in runs])),
            "far_pooled": float(np.mean([r.alerted("pooled") for r in runs])),
        }

    def delay(self, kind: str, size: float, seeds: range, condition: int | None = None) -> dict:
        start = self.args.start
        delays = {"per_condition": [], "pooled": []}
        right = []
        for s in seeds:
            feature = int(np.random.default_rng(10_000 + s).choice(self.varying))
            r = self.replay(
                10_000 + s, Drift(kind, feature, size, start=start, condition=condition)
            )
            for rule in delays:
                delays[rule].append(r.delay(rule, start))
            if condition is not None and np.isfinite(r.delay("per_condition", start)):
                right.append(r.where["per_condition"][0] == self.profile.conditions[condition])
        summary = {"replays": len(seeds)}
        for rule, values in delays.items():
            d = np.array(values)
            summary[f"median_delay_{rule}"] = float(np.median(d))
            summary[f"detected_{rule}"] = float(np.isfinite(d).mean())
        if right:
            summary["named_the_drifted_condition"] = float(np.mean(right))
        return summary

    def mix_shift(self, seeds: range) -> dict:
        k = self.profile.n_conditions
        thin = {c: 0.15 for c in range(1, min(k, 5))}
        runs = [self.replay(20_000 + s, thin=thin) for s in seeds]
        return {
            "replays": len(runs),
            "input_drift_alerts_per_condition": float(
                np.mean([r.alerted("per_condition") for r in runs])
            ),
            "input_drift_alerts_pooled": float(np.mean([r.alerted("pooled") for r in runs])),
            "mix_shift_reported": float(np.mean([r.alerted("mix") for r in runs])),
        }

    def cost(self) -> dict:
        x, codes = self.pool.x, self.pool.codes
        reps = max(1, 100_000 // len(x))
        xs, cs = np.tile(x, (reps, 1)), np.tile(codes, reps)
        sketch = ProfileSketch(self.profile)
        times = []
        for _ in range(3):
            sketch.reset()
            start = time.perf_counter()
            for i in range(0, len(xs), 256):
                sketch.update(xs[i : i + 256], cs[i : i + 256])
            times.append(time.perf_counter() - start)
        chunk = ProfileSketch(self.profile).update(x[:200], codes[:200])
        monitor = Monitor(self.profile, self.rules)
        check_times = []
        for t in range(30):
            start = time.perf_counter()
            monitor.check(t, chunk)
            check_times.append(time.perf_counter() - start)
        sketch_bytes = len(json.dumps(sketch.to_dict(), separators=(",", ":")))
        profile_bytes = len(json.dumps(self.profile.to_dict(), separators=(",", ":")))
        return {
            "sketch_rows_per_s": len(xs) / float(np.median(times)),
            "check_ms_per_chunk": 1000 * float(np.median(check_times)),
            "sketch_bytes": sketch_bytes,
            "sketch_bytes_per_condition": sketch_bytes / (self.profile.n_conditions + 2),
            "profile_bytes": profile_bytes,
            "profile_build_s": self.build_seconds,
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", nargs="+", default=["FD002", "synthetic"])
    parser.add_argument("--data", default=None, help="data root holding cmapss/ (default: config)")
    parser.add_argument("--replays", type=int, default=200)
    parser.add_argument("--delay-replays", type=int, default=60)
    parser.add_argument("--chunks", type=int, default=40)
    parser.add_argument("--start", type=int, default=10, help="chunk where drift starts")
    parser.add_argument("--active", type=int, default=10, help="assets running at a time")
    parser.add_argument("--rows-per-asset", type=int, default=20, help="rows per asset per chunk")
    parser.add_argument("--alpha", type=float, default=0.05)
    parser.add_argument("--horizon", type=int, default=200)
    parser.add_argument(
        "--synthetic-assets", type=int, default=150, help="pumps in the synthetic fleet"
    )
    parser.add_argument(
        "--synthetic-faults",
        action="store_true",
        help="keep the simulator's sensor faults (stuck sensors, spikes) in the in-control data",
    )
    parser.add_argument("--out", default="outputs/bench-monitoring")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results = {"args": vars(args)}
    for dataset in args.datasets:
        start = time.perf_counter()
        bench = Bench(prepare(dataset, args), args)
        r: dict = {
            "conditions": bench.profile.n_conditions,
            "features": len(bench.profile.features),
            "held_out_assets": bench.held_out_assets,
            "null_scale": bench.profile.null["scale"].tolist(),
            "cost": bench.cost(),
        }
        print(dataset, "cost", json.dumps(r["cost"]), flush=True)
        r["false_alarms"] = bench.far(range(args.replays))
        print(dataset, "false alarms", json.dumps(r["false_alarms"]), flush=True)
        seeds = range(args.delay_replays)
        for kind, size in DELAYS:
            r[f"delay_{kind}_{size:g}"] = bench.delay(kind, size, seeds)
            print(dataset, kind, size, json.dumps(r[f"delay_{kind}_{size:g}"]), flush=True)
        r["delay_bias_1_one_condition"] = bench.delay("bias", 1.0, seeds, condition=0)
        print(dataset, "one condition", json.dumps(r["delay_bias_1_one_condition"]), flush=True)
        if bench.profile.n_conditions > 1:
            r["mix_shift"] = bench.mix_shift(range(args.delay_replays))
            print(dataset, "mix shift", json.dumps(r["mix_shift"]), flush=True)
        r["seconds"] = time.perf_counter() - start
        results[dataset] = r
        (out / "bench_monitoring.json").write_text(json.dumps(results, indent=1) + "\n")
    print(f"wrote {out / 'bench_monitoring.json'}")


if __name__ == "__main__":
    main()
