"""Windowing benchmark: batches per second and peak memory against a strided reference.

For each window length the same shuffled batches (of 256 windows) are drawn by

- ``reference``: row-indexing a numpy ``sliding_window_view`` over one contiguous
  array (the fastest plain-numpy way; the target is >= 0.8x of it);
- ``plantml``: ``WindowDataset[batch_indices]`` (the gather the data module runs,
  returning torch tensors with targets, conditions and assets);
- ``plantml+loader``: the same through ``torch.utils.data.DataLoader`` with the
  batch sampler, as training consumes it;
- ``materialized``: all windows copied into one array first (what many
  libraries do), for the memory comparison.

Each (method, length) runs in a fresh subprocess, so peak RSS is its own.

Reproduce (C-MAPSS FD004 from ../shared/data, and a high-rate synthetic fleet):

    .venv/bin/python scripts/bench_windows.py --data ../shared/data/cmapss --lengths 30 100 300 \
        --high-rate-length 3000 --out outputs/bench/windows.json
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from plantml.threads import limit_threads

BATCH = 256


def load_fd004(root: str) -> tuple[np.ndarray, np.ndarray]:
    from plantml.data.sources.cmapss import CMAPSSSource

    table = CMAPSSSource(root, "FD004").load("train")
    keep = [
        "sensor_2",
        "sensor_3",
        "sensor_4",
        "sensor_7",
        "sensor_8",
        "sensor_9",
        "sensor_11",
        "sensor_12",
        "sensor_13",
        "sensor_14",
        "sensor_15",
        "sensor_17",
        "sensor_20",
        "sensor_21",
    ]
    x = table.frame[keep].to_numpy(np.float32)
    return np.ascontiguousarray(x), table.frame["unit"].to_numpy()


def high_rate_fleet(
    assets: int = 16, rows: int = 60_000, channels: int = 4
) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(assets * rows, channels)).astype(np.float32)
    return x, np.repeat(np.arange(assets), rows)


def run_one(method: str, length: int, data: str, batches: int) -> dict:
    import gc

    x, assets = load_fd004(data) if data != "high-rate" else high_rate_fleet()
    from plantml.data.windows import WindowDataset, WindowIndex, run_starts, window_ends

    gc.collect()
    base_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    ends = window_ends(run_starts(assets), length)
    n = len(ends)
    rng = np.random.default_rng(0)
    order = [rng.integers(0, n, BATCH) for _ in range(batches)]
    zeros = np.zeros(n, np.float32)
    if method == "reference":
        from numpy.lib.stride_tricks import sliding_window_view

        view = sliding_window_view(x, (length, x.shape[1]))[:, 0]
        starts = ends - length + 1
        fetch = lambda idx: (view[starts[idx]], zeros[idx])  # noqa: E731
    elif method == "materialized":
        from numpy.lib.stride_tricks import sliding_window_view

        allw = np.ascontiguousarray(
            sliding_window_view(x, (length, x.shape[1]))[:, 0][ends - length + 1]
        )
        fetch = lambda idx: (allw[idx], zeros[idx])  # noqa: E731
    else:
        index = WindowIndex(ends, zeros, np.zeros(n, np.int64), assets[ends].astype(np.int64))
        ds = WindowDataset(x, index, length)
        fetch = ds.__getitem__
        if method == "plantml+loader":
            from torch.utils.data import DataLoader

            class Fixed:
                def __iter__(self):
                    return iter(order)

                def __len__(self):
                    return len(order)

            loader = DataLoader(ds, batch_size=None, sampler=Fixed())
    for idx in order[:20]:
        fetch(idx)
    t0 = time.perf_counter()
    if method == "plantml+loader":
        for _batch in loader:
            pass
    else:
        for idx in order:
            fetch(idx)
    seconds = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {
        "method": method,
        "length": length,
        "windows": n,
        "rows": len(x),
        "channels": x.shape[1],
        "batches_per_s": batches / seconds,
        "peak_rss_mb": peak,
        "rss_over_table_load_mb": peak - base_rss,
        "table_mb": x.nbytes / 2**20,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--data", default="../shared/data/cmapss", help="folder with train_FD004.txt[.gz]"
    )
    parser.add_argument("--lengths", type=int, nargs="+", default=[30, 100, 300])
    parser.add_argument("--high-rate-length", type=int, default=3000)
    parser.add_argument("--batches", type=int, default=2000)
    parser.add_argument(
        "--repeats", type=int, default=3, help="runs per cell; the median is reported"
    )
    parser.add_argument("--out", default=None, help="write the results as JSON here")
    parser.add_argument("--_one", nargs=3, help=argparse.SUPPRESS)
    parser.add_argument(
        "--threads",
        type=int,
        default=2,
        help="torch/OpenMP threads, here and in every process it starts (default 2)",
    )
    args = parser.parse_args()
    limit_threads(args.threads)
    if args._one:
        method, length, data = args._one
        print(json.dumps(run_one(method, int(length), data, args.batches)))
        return
    cells = [(length, args.data) for length in args.lengths] + [
        (args.high_rate_length, "high-rate")
    ]
    methods = ["reference", "plantml", "plantml+loader", "materialized"]
    results = []
    for length, data in cells:
        for method in methods:
            if method == "materialized" and data == "high-rate":
                continue  # would need tens of GB
            runs = []
            for _ in range(args.repeats):
                out = subprocess.run(
                    [
                        sys.executable,
                        __file__,
                        "--batches",
                        str(args.batches),
                        "--_one",
                        method,
                        str(length),
                        data,
                    ],
                    capture_output=True,
                    text=True,
                    check=True,
                )
                runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
            row = dict(runs[0])
            row["data"] = "FD004" if data != "high-rate" else "high-rate synthetic"
            row["batches_per_s"] = float(np.median([r["batches_per_s"] for r in runs]))
            row["peak_rss_mb"] = float(np.median([r["peak_rss_mb"] for r in runs]))
            row["rss_over_table_load_mb"] = float(
                np.median([r["rss_over_table_load_mb"] for r in runs])
            )
            results.append(row)
            print(
                f"{row['data']:>20} L={length:<5} {method:<15} {row['batches_per_s']:>10,.0f} batches/s "
                f"peak {row['peak_rss_mb']:7.0f} MB (+{row['rss_over_table_load_mb']:.0f} MB over table load)",
                flush=True,
            )
    for length, data in cells:
        name = "FD004" if data != "high-rate" else "high-rate synthetic"
        ref = next(
            r
            for r in results
            if r["length"] == length and r["method"] == "reference" and r["data"] == name
        )
        ours = next(
            r
            for r in results
            if r["length"] == length and r["method"] == "plantml" and r["data"] == name
        )
        print(
            f"ratio plantml/reference {name} L={length}: {ours['batches_per_s'] / ref['batches_per_s']:.2f}"
        )
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
