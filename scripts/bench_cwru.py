"""CWRU fault classification across motor loads: test accuracy and macro F1 per train → test pair.

Trains ``experiment=cwru_fault`` once per pair of the loads present under
``../shared/data/cwru`` (0, 1, 2 HP; 3 HP is held back) and prints a markdown
table with the average. Every number comes from this command (CPU, ~15 epochs a pair)::

    .venv/bin/python scripts/bench_cwru.py --epochs 15

One pair, quickly: ``scripts/bench_cwru.py --pairs 01-2 --epochs 2``. Each run's
folder (metrics.json, confusion matrices) is under ``$PLANTML_OUTPUTS`` (default
/tmp/bench_cwru). Same-load (0 HP, first part of each recording → its rest) uses
``data.split_by.method=head`` with ``--head-rows`` samples per recording for
train + val; it is skipped with ``--no-same-load``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

from plantml.threads import limit_threads

CROSS_LOAD = {"01-2": ([0, 1], [2]), "02-1": ([0, 2], [1]), "12-0": ([1, 2], [0])}


def run(name: str, overrides: list[str], epochs: int, outputs: Path) -> dict:
    """Train one pair; the metrics of its held-out split."""
    cmd = [
        str(Path(sys.executable).with_name("plantml-train")),
        "experiment=cwru_fault",
        "logger=csv",
        f"trainer.max_epochs={epochs}",
        "bootstrap=0",
        "callbacks.progress_bar.refresh_rate=0",
        f"run_name=bench_cwru_{name}",
        *overrides,
    ]
    env = {**os.environ, "PLANTML_OUTPUTS": str(outputs)}
    subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL)
    latest = max((outputs / f"bench_cwru_{name}").glob("runs/*/metrics.json"), key=os.path.getmtime)
    return json.loads(latest.read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--pairs", nargs="*", default=list(CROSS_LOAD), choices=list(CROSS_LOAD))
    parser.add_argument("--no-same-load", action="store_true", help="skip the 0 HP same-load run")
    parser.add_argument("--head-rows", type=int, default=40000, help="same-load: train+val samples")
    parser.add_argument("--outputs", type=Path, default=Path("/tmp/bench_cwru"))
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch/OpenMP threads, here and in every process it starts (default 1)",
    )
    args = parser.parse_args()
    limit_threads(args.threads)

    jobs = {}
    for pair in args.pairs:
        train, test = CROSS_LOAD[pair]
        jobs[f"{pair[:-2]} → {pair[-1]}"] = (
            pair,
            [f"data.train_loads=[{','.join(map(str, train))}]", f"data.test_loads=[{test[0]}]"],
        )
    if not args.no_same_load:
        jobs["0 → 0 (head / rest)"] = (
            "same0",
            [
                "data.source.loads=[0]",
                "data.split_by.method=head",
                f"+data.split_by.head_rows={args.head_rows}",
            ],
        )
    rows = []
    for label, (name, overrides) in jobs.items():
        m = run(name, overrides, args.epochs, args.outputs)
        rows.append((label, m.get("test/accuracy"), m.get("test/macro_f1"), m.get("test/n")))
        print(f"{label}: accuracy {m.get('test/accuracy'):.3f}", file=sys.stderr)
    print(f"\n{args.epochs} epochs, experiment=cwru_fault\n")
    print("| train → test (HP) | accuracy | macro F1 | windows |")
    print("| --- | --- | --- | --- |")
    for label, acc, f1, n in rows:
        print(f"| {label} | {acc:.3f} | {f1:.3f} | {n} |")
    cross = [r for r in rows if "head" not in r[0]]
    if cross:
        mean_acc = sum(r[1] for r in cross) / len(cross)
        mean_f1 = sum(r[2] for r in cross) / len(cross)
        print(f"| average (cross-load) | {mean_acc:.3f} | {mean_f1:.3f} | |")


if __name__ == "__main__":
    main()
