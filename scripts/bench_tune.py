"""Hyperparameter sweep benchmark: what pruning and a second worker buy on C-MAPSS FD001.

Runs the same plantml-tune study (``hparams_search=cmapss_rul``, TPE with one seed,
short training) three times, each as a fresh study in its own folder:

- (a) no pruning, one worker;
- (b) pruning (median by default, or hyperband), one worker;
- (c) the same pruning with ``tune.n_workers=2`` (one torch thread per worker).

For each it reports the wall time of the whole ``plantml-tune`` command, trials
complete / pruned / failed, the best validation RMSE, and the speed-up over (a),
as a markdown table (also written to ``<out>/bench_tune.md``).

Reproduce (the numbers in the README's tuning section, 2-core CPU, nothing else running):

    .venv/bin/python scripts/bench_tune.py --trials 20 --epochs 6 --limit-train-batches 40 \\
        --pruner median --out outputs/bench_tune

Check that it runs (a few minutes): ``--trials 4 --epochs 2 --limit-train-batches 10``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

from plantml.threads import limit_threads

BIN = Path(sys.executable).parent
REPO = Path(__file__).resolve().parents[1]


def run_study(name: str, args: argparse.Namespace, pruner: str, workers: int) -> dict:
    """One plantml-tune run into ``<out>/tune/<name>``; wall time and the study's results."""
    pruners = {
        "none": ["tune.pruner.name=none"],
        "median": [
            "tune.pruner.name=median",
            "tune.pruner.n_startup_trials=5",
            "tune.pruner.n_warmup_steps=1",
        ],
        "hyperband": [
            "tune.pruner.name=hyperband",
            "tune.pruner.min_resource=1",
            f"tune.pruner.max_resource={args.epochs}",
            "tune.pruner.reduction_factor=3",
        ],
    }
    command = [
        str(BIN / "plantml-tune"),
        "experiment=cmapss_rul",
        f"data.root={args.data}",
        "logger=csv",
        f"trainer.max_epochs={args.epochs}",
        f"trainer.limit_train_batches={args.limit_train_batches}",
        f"tune.n_trials={args.trials}",
        f"tune.study_name={name}",
        f"tune.n_workers={workers}",
        f"tune.sampler.seed={args.seed}",
        *pruners[pruner],
    ]
    env = {**os.environ, "PLANTML_OUTPUTS": str(args.out)}  # thread limits: --threads
    folder = args.out / "tune" / name
    if (folder / "study.db").exists():
        sys.exit(f"{folder} holds a study already; remove it or choose another --out")
    start = time.perf_counter()
    proc = subprocess.run(command, env=env, cwd=REPO, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"{' '.join(command)} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")
    trials = pd.read_csv(folder / "trials.csv")
    best = json.loads((folder / "best.json").read_text())["best"]
    states = trials["state"].value_counts()
    return {
        "seconds": seconds,
        "complete": int(states.get("COMPLETE", 0)),
        "pruned": int(states.get("PRUNED", 0)),
        "fail": int(states.get("FAIL", 0)),
        "best_rmse": best["values"]["val/rmse"] if best else float("nan"),
    }


def table(rows: list[tuple[str, dict]]) -> str:
    base = rows[0][1]["seconds"]
    lines = [
        "| study | wall time | complete / pruned / failed | best val RMSE | speed-up vs (a) |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for label, r in rows:
        lines.append(
            f"| {label} | {r['seconds'] / 60:.1f} min | {r['complete']} / {r['pruned']} / "
            f"{r['fail']} | {r['best_rmse']:.2f} | {base / r['seconds']:.2f}x |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trials", type=int, default=20, help="trials per study (default 20)")
    parser.add_argument("--epochs", type=int, default=6, help="trainer.max_epochs per trial")
    parser.add_argument(
        "--limit-train-batches", type=int, default=40, help="training batches per epoch"
    )
    parser.add_argument(
        "--pruner", choices=("median", "hyperband"), default="median", help="for (b) and (c)"
    )
    parser.add_argument("--seed", type=int, default=0, help="the TPE sampler's seed")
    parser.add_argument(
        "--data", type=Path, default=REPO.parent / "shared" / "data" / "cmapss", help="C-MAPSS"
    )
    parser.add_argument("--out", type=Path, default=REPO / "outputs" / "bench_tune")
    parser.add_argument(
        "--threads",
        type=int,
        default=2,
        help="torch/OpenMP threads, here and in every process it starts (default 2)",
    )
    args = parser.parse_args()
    limit_threads(args.threads)
    args.data, args.out = args.data.resolve(), args.out.resolve()
    if not any(args.data.glob("train_FD001.txt*")):
        print(f"C-MAPSS FD001 not found in {args.data} (train_FD001.txt): benchmark skipped")
        return
    studies = [
        ("(a) no pruning, 1 worker", "none", 1),
        (f"(b) {args.pruner} pruning, 1 worker", args.pruner, 1),
        (f"(c) {args.pruner} pruning, 2 workers", args.pruner, 2),
    ]
    rows = []
    for i, (label, pruner, workers) in enumerate(studies):
        name = f"bench_{'abc'[i]}_{pruner}_{workers}w"
        print(f"{label}: {args.trials} trials ...", flush=True)
        result = run_study(name, args, pruner, workers)
        print(
            f"  {result['seconds']:.0f} s, {result['complete']} complete, {result['pruned']} "
            f"pruned, best val RMSE {result['best_rmse']:.2f}",
            flush=True,
        )
        rows.append((label, result))
    text = (
        f"C-MAPSS FD001, {args.trials} trials, up to {args.epochs} epochs x "
        f"{args.limit_train_batches} batches, TPE seed {args.seed}, {os.cpu_count()} cores\n\n"
        + table(rows)
    )
    print(text)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "bench_tune.md").write_text(text + "\n")


if __name__ == "__main__":
    main()
