"""Training throughput: plantml's Lightning path against a hand-written PyTorch loop.

Same model (LSTM, hidden 64, 2 layers), same windows (30 x 14, C-MAPSS-like
random data unless --data is given), batch 256, fp32, same optimizer. Three
ways to feed and train, timed over the same number of steps after warm-up:

- ``hand``: contiguous tensors, batches gathered by index, a plain loop;
- ``lightning-tensordataset``: a Lightning Trainer fed by a per-sample
  ``TensorDataset`` DataLoader (the usual recipe, for reference);
- ``plantml``: a Lightning Trainer running plantml's ``RULTask`` on
  ``WindowDataset`` with ``WindowBatchSampler`` (what ``plantml-train`` runs;
  on a GPU the table lives on the device and batches are gathered there).

Each step is timed from the end of the previous one (so data loading and every
Lightning hook count). Two rates per run: batch / median step time (robust to
the machine's noise spikes) and windows over the whole timed span. Runs repeat
``--repeats`` times, alternating methods; the median run is reported with its
ratio to ``hand``.

Reproduce:

    .venv/bin/python scripts/bench_train_throughput.py --steps 150 --repeats 3
    .venv/bin/python scripts/bench_train_throughput.py --accelerator gpu --precision bf16-mixed --batch 1024
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
import warnings
from functools import partial

import numpy as np
import torch

from plantml.data.sampling import WindowBatchSampler
from plantml.data.windows import WindowDataset, WindowIndex, run_starts, window_ends
from plantml.models import LSTMModel
from plantml.tasks import RULTask
from plantml.threads import limit_threads


def make_data(rows: int, channels: int, length: int, assets: int = 100):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(rows, channels)).astype(np.float32)
    asset = np.repeat(np.arange(assets), rows // assets)
    x = x[: len(asset)]
    ends = window_ends(run_starts(asset), length)
    y = rng.uniform(0, 125, len(ends)).astype(np.float32)
    return x, ends, y


class Timer:
    """Time between consecutive step ends (data, forward, backward, optimizer, hooks).

    The rate is batch / median step time: robust to the machine's noise spikes.
    """

    def __init__(self, warmup: int, steps: int):
        self.warmup, self.steps, self.n, self.stamps = warmup, steps, 0, []

    def tick(self, batch_size: int) -> None:
        self.n += 1
        if self.n >= self.warmup:
            self.stamps.append(time.perf_counter())
        self.batch = batch_size

    def rate(self) -> tuple[float, float]:
        """(windows/s from the median step, windows/s over the whole timed span)."""
        steps = np.diff(self.stamps)
        return self.batch / float(np.median(steps)), self.batch * len(steps) / float(steps.sum())


def hand_loop(x, ends, y, args) -> float:
    device = torch.device("cuda" if args.accelerator == "gpu" else "cpu")
    model = LSTMModel(x.shape[1], 1, 64, 2, 0.1).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    xs = torch.from_numpy(x).to(device)
    ys = torch.from_numpy(y).to(device)
    offsets = torch.arange(-args.length + 1, 1, device=device)
    ends_t = torch.from_numpy(ends).to(device)
    timer = Timer(args.warmup, args.steps)
    dtype = torch.bfloat16 if args.precision.startswith("bf16") else None
    while timer.n < args.warmup + args.steps:
        perm = torch.randperm(len(ends_t), device=device)
        for i in range(0, len(perm) - args.batch + 1, args.batch):
            idx = perm[i : i + args.batch]
            xb = xs[ends_t[idx, None] + offsets]
            with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
                loss = torch.nn.functional.mse_loss(model(xb).squeeze(-1).float(), ys[idx] / 125)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if device.type == "cuda":
                torch.cuda.synchronize()
            timer.tick(args.batch)
            if timer.n >= args.warmup + args.steps:
                break
    return timer.rate()


def lightning_run(x, ends, y, args, feed: str) -> float:
    import lightning as L

    timer = Timer(args.warmup, args.steps)

    class Tick(L.Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            if args.accelerator == "gpu":
                torch.cuda.synchronize()
            timer.tick(args.batch)

    model = LSTMModel(x.shape[1], 1, 64, 2, 0.1)
    task = RULTask(model, partial(torch.optim.AdamW, lr=1e-3), target_scale=125)
    if feed == "plantml":
        index = WindowIndex(ends, y, np.zeros(len(ends), np.int64), np.zeros(len(ends), np.int64))
        # on a GPU, plantml-train keeps the table on the device and gathers batches there
        ds = WindowDataset(x, index, args.length, "cuda" if args.accelerator == "gpu" else None)
        loader = torch.utils.data.DataLoader(
            ds,
            batch_size=None,
            sampler=WindowBatchSampler(len(ds), args.batch, "shuffle", drop_last=True),
        )
    else:
        windows = torch.from_numpy(np.stack([x[e - args.length + 1 : e + 1] for e in ends]))
        tds = torch.utils.data.TensorDataset(windows, torch.from_numpy(y))
        collate = lambda items: {  # noqa: E731
            "x": torch.stack([i[0] for i in items]),
            "y": torch.stack([i[1] for i in items]),
            "condition": torch.zeros(len(items), dtype=torch.long),
            "asset": torch.zeros(len(items), dtype=torch.long),
        }
        loader = torch.utils.data.DataLoader(
            tds, batch_size=args.batch, shuffle=True, drop_last=True, collate_fn=collate
        )
    trainer = L.Trainer(
        accelerator=args.accelerator,
        devices=1,
        precision=args.precision,
        max_steps=args.warmup + args.steps,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        callbacks=[Tick()],
    )
    trainer.fit(task, train_dataloaders=loader)
    return timer.rate()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=60_000)
    parser.add_argument("--channels", type=int, default=14)
    parser.add_argument("--length", type=int, default=30)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--accelerator", default="cpu")
    parser.add_argument("--precision", default="32-true")
    parser.add_argument(
        "--methods", nargs="+", default=["hand", "plantml", "lightning-tensordataset"]
    )
    parser.add_argument("--out", default=None)
    parser.add_argument(
        "--threads",
        type=int,
        default=2,
        help="torch/OpenMP threads, here and in every process it starts (default 2)",
    )
    args = parser.parse_args()
    limit_threads(args.threads)
    warnings.filterwarnings("ignore")
    import logging

    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    x, ends, y = make_data(args.rows, args.channels, args.length)
    runs: dict[str, list[tuple[float, float]]] = {m: [] for m in args.methods}
    for _ in range(args.repeats):
        for method in args.methods:
            torch.manual_seed(0)
            rate = (
                hand_loop(x, ends, y, args)
                if method == "hand"
                else lightning_run(x, ends, y, args, method)
            )
            runs[method].append(rate)
    result = {"config": vars(args), "threads": torch.get_num_threads(), "windows_per_s": {}}
    for k, label in ((0, "median step"), (1, "whole span")):
        hand = statistics.median(r[k] for r in runs["hand"]) if "hand" in runs else None
        print(f"-- windows/s from the {label}")
        for method, rates in runs.items():
            med = statistics.median(r[k] for r in rates)
            result["windows_per_s"].setdefault(method, {})[label] = med
            ratio = f"  ({med / hand:.2f}x hand)" if hand else ""
            print(
                f"{method:<26} {med:>10,.0f} windows/s  runs {[round(r[k]) for r in rates]}{ratio}"
            )
    if args.out:
        with open(args.out, "w") as handle:
            json.dump(result, handle, indent=2)


if __name__ == "__main__":
    main()
