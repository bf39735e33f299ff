"""Time to evaluate one million windows: model inference, metrics per condition, asset bootstrap.

Synthetic predictions for ``--windows`` windows from ``--assets`` assets in
``--conditions`` operating conditions; ``evaluate`` computes RUL and failure
metrics overall and per condition with 95 % intervals from ``--n-boot`` asset
resamples. ``--inference`` also times the LSTM (hidden 64, 2 layers) on
30 x 14 windows gathered by ``WindowDataset``, batch 4096, on the CPU.

Reproduce:

    .venv/bin/python scripts/bench_evaluate.py --windows 1000000 --assets 2000 --n-boot 1000 --inference
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from plantml.evaluation.metrics import evaluate
from plantml.threads import limit_threads


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--windows", type=int, default=1_000_000)
    parser.add_argument("--assets", type=int, default=2000)
    parser.add_argument("--conditions", type=int, default=6)
    parser.add_argument("--n-boot", type=int, default=1000)
    parser.add_argument("--inference", action="store_true")
    parser.add_argument(
        "--threads",
        type=int,
        default=2,
        help="torch/OpenMP threads, here and in every process it starts (default 2)",
    )
    args = parser.parse_args()
    limit_threads(args.threads)
    rng = np.random.default_rng(0)
    n = args.windows
    assets = torch.from_numpy(np.sort(rng.integers(0, args.assets, n)))
    conditions = torch.from_numpy(rng.integers(0, args.conditions, n))
    names = [f"c{i}" for i in range(args.conditions)]
    rul = torch.from_numpy(rng.uniform(0, 125, n)).float()
    rul_pred = rul + torch.from_numpy(rng.normal(0, 15, n)).float()
    y = torch.from_numpy((rng.random(n) < 0.03).astype(np.float32))
    prob = (0.6 * y + 0.5 * torch.from_numpy(rng.random(n)).float()).clamp(0, 1)
    for kind, pred, target in (("rul", rul_pred, rul), ("failure", prob, y)):
        t0 = time.perf_counter()
        evaluate(kind, pred, target, conditions, names, 0.5, assets=assets, n_boot=0)
        t1 = time.perf_counter()
        evaluate(kind, pred, target, conditions, names, 0.5, assets=assets, n_boot=args.n_boot)
        t2 = time.perf_counter()
        print(
            f"{kind:<8} {n:,} windows, {args.conditions} conditions: metrics {t1 - t0:.2f} s; "
            f"with {args.n_boot} asset resamples per condition {t2 - t1:.2f} s"
        )
    if args.inference:
        from plantml.data.windows import WindowDataset, WindowIndex, run_starts, window_ends
        from plantml.models import LSTMModel

        rows = n + 30 * args.assets
        x = rng.normal(size=(rows, 14)).astype(np.float32)
        asset_rows = np.repeat(np.arange(args.assets), rows // args.assets + 1)[:rows]
        ends = window_ends(run_starts(asset_rows), 30)[:n]
        zeros = np.zeros(len(ends), np.int64)
        ds = WindowDataset(x, WindowIndex(ends, zeros.astype(np.float32), zeros, zeros), 30)
        model = LSTMModel(14, 1, 64, 2).eval()
        t0 = time.perf_counter()
        with torch.inference_mode():
            for start in range(0, len(ends), 4096):
                model(ds[np.arange(start, min(start + 4096, len(ends)))]["x"])
        dt = time.perf_counter() - t0
        print(
            f"inference {len(ends):,} windows (LSTM 64x2, 30x14, batch 4096, {torch.get_num_threads()} threads): "
            f"{dt:.1f} s ({len(ends) / dt:,.0f} windows/s)"
        )


if __name__ == "__main__":
    main()
