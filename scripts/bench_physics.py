"""Does the RUL consistency loss help when training data is scarce? C-MAPSS FD001.

Trains ``cmapss_rul`` and ``cmapss_rul_physics`` on a fraction of the training
units, several seeds each, and prints val RMSE (mean ± std over seeds) as a
markdown table. The full measurement (what the README reports):

    .venv/bin/python scripts/bench_physics.py \
        --fractions 0.1 1.0 --seeds 0 1 2 --max-epochs 15

How a fraction of units is kept (no pipeline change): the asset split is
seeded, ``val`` takes the first ``val_fraction`` of a permutation of units and
``test`` the next ``test_fraction``; so ``data.split_by.test_fraction = (1 -
val) * (1 - fraction)`` parks the unwanted training units in the (unused)
``test`` split. With the same seed the val units are the same at every
fraction (20 of 100 on FD001), and 10 % keeps 8 training units (of 80). C-MAPSS
has an official test set, so training never scores the parked units. The seed
sets both the units drawn and the model's initialisation, identically for the
two tasks (paired comparison).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

from plantml.threads import limit_threads

EXPERIMENTS = ("cmapss_rul", "cmapss_rul_physics")
VAL_FRACTION = 0.2


def run_one(experiment: str, fraction: float, seed: int, args: argparse.Namespace) -> dict:
    """Train one configuration; returns its metrics (``val/rmse`` among them)."""
    from plantml import api

    test_fraction = round((1 - VAL_FRACTION) * (1 - fraction), 6)
    overrides = [
        f"experiment={experiment}",
        f"data.subset={args.subset}",
        f"seed={seed}",
        f"trainer.max_epochs={args.max_epochs}",
        f"data.split_by.val_fraction={VAL_FRACTION}",
        f"data.split_by.test_fraction={test_fraction}",
        "logger=none" if args.no_logger else "logger=csv",
        "bootstrap=0",
    ]
    if args.data_dir:
        overrides.append(f"paths.data_dir={args.data_dir}")
    overrides += args.override
    out = Path(args.output_dir) / f"{experiment}_f{fraction}_s{seed}"
    cfg = api.compose(overrides, output_dir=out)
    start = time.perf_counter()
    metrics = api.train(cfg)
    metrics["seconds"] = time.perf_counter() - start
    return metrics


def table(results: dict, fractions: list[float]) -> str:
    """Markdown table: val RMSE mean ± std per experiment and fraction."""

    def cell(values: list[float]) -> str:
        if not values:
            return "–"
        std = statistics.stdev(values) if len(values) > 1 else 0.0
        return f"{statistics.mean(values):.2f} ± {std:.2f} (n={len(values)})"

    lines = ["| experiment | " + " | ".join(f"{f:.0%} of units" for f in fractions) + " |"]
    lines.append("|---" * (len(fractions) + 1) + "|")
    for exp in EXPERIMENTS:
        row = [cell([m["val/rmse"] for m in results.get((exp, f), [])]) for f in fractions]
        lines.append(f"| {exp} | " + " | ".join(row) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--fractions", type=float, nargs="+", default=[0.1, 1.0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--max-epochs", type=int, default=15)
    parser.add_argument("--subset", default="FD001")
    parser.add_argument("--data-dir", default=None, help="folder holding cmapss/ (paths.data_dir)")
    parser.add_argument("--output-dir", default=None, help="run folders (default: a temp dir)")
    parser.add_argument("--no-logger", action="store_true", help="logger=none")
    parser.add_argument("--json", default=None, help="also write every run's metrics here")
    parser.add_argument("override", nargs="*", help="extra Hydra overrides for every run")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch/OpenMP threads, here and in every process it starts (default 1)",
    )
    args = parser.parse_args(argv)
    limit_threads(args.threads)
    for f in args.fractions:
        if not 0 < f <= 1:
            parser.error(f"--fractions must be in (0, 1], got {f}")
    args.output_dir = args.output_dir or tempfile.mkdtemp(prefix="bench_physics_")
    results: dict = {}
    rows = []
    for fraction in args.fractions:
        for seed in args.seeds:
            for exp in EXPERIMENTS:
                m = run_one(exp, fraction, seed, args)
                results.setdefault((exp, fraction), []).append(m)
                rows.append({"experiment": exp, "fraction": fraction, "seed": seed, **m})
                print(
                    f"{exp} fraction={fraction} seed={seed}: val/rmse={m['val/rmse']:.2f} "
                    f"({m['seconds']:.0f} s, {m.get('epochs')} epochs)",
                    file=sys.stderr,
                    flush=True,
                )
    print(table(results, args.fractions))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
