"""Train in this process or in a child that a test kills; read per-epoch validation metrics.

``python -m tests.integration.resume_helpers DIR KILL_STEP OVERRIDE...`` trains with
the overrides into DIR and SIGKILLs its own process right after optimizer step
KILL_STEP: no Python cleanup, no Lightning teardown, what a power cut leaves on disk.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import pandas as pd
from lightning.pytorch.callbacks import Callback

# tiny fleet, small LSTM, short epochs: each run takes a few seconds on 2 cores
FAST = [
    "logger=csv",
    "data.n_assets=10",
    "data.days=40",
    "data.window.length=24",
    "model.hidden_size=16",
    "model.head_size=8",
    "trainer.max_epochs=3",
    "trainer.limit_train_batches=4",
    "callbacks.progress_bar=null",
    "+trainer.enable_model_summary=false",
    "bootstrap=0",
    "seed=5",
]


class Crash(Exception):
    """Stands for a crash in the in-process variant (Lightning's interruption path)."""


class StopAt(Callback):
    """Ends training right after optimizer step ``step``: raises :class:`Crash`, or SIGKILLs."""

    def __init__(self, step: int, kill: bool = False):
        self.step, self.kill = step, kill

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step == self.step:
            if self.kill:
                os.kill(os.getpid(), signal.SIGKILL)
            raise Crash(f"stopped after step {self.step}")


def train_in_process(overrides: list[str], output_dir: Path, stop_at: int | None = None) -> dict:
    """Train with ``overrides`` into ``output_dir``; ``stop_at``: crash after that step."""
    from plantml import api
    from plantml.cli.common import quiet_libraries
    from plantml.training import train

    quiet_libraries()
    cfg = api.compose(overrides, output_dir=output_dir)
    extra = [StopAt(stop_at)] if stop_at is not None else []
    return train(cfg, extra_callbacks=extra)


def epoch_metrics(run: Path, keys: tuple[str, ...] = ("val/loss", "val/auprc")) -> dict:
    """{epoch: (val/loss, val/auprc)} from the run's CSV log (validation rows only)."""
    frame = pd.read_csv(run / "csv" / "metrics.csv")
    frame = frame.dropna(subset=[keys[0]])
    return {int(e): tuple(float(v) for v in row) for e, *row in frame[["epoch", *keys]].values}


if __name__ == "__main__":
    folder, step, *overrides = sys.argv[1:]
    from plantml import api
    from plantml.cli.common import quiet_libraries
    from plantml.training import train

    quiet_libraries()
    train(api.compose(overrides, output_dir=folder), extra_callbacks=[StopAt(int(step), True)])
    sys.exit(3)  # never reached when the kill step comes
