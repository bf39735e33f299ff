"""Run the installed entry points the way a user does."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

BIN = Path(sys.executable).parent
TINY = [
    "logger=csv",
    "data.n_assets=10",
    "data.days=60",
    "trainer.max_epochs=2",
    "trainer.limit_train_batches=4",
    "callbacks.progress_bar.refresh_rate=0",
]
# the shared run of the slow tests (tests/integration/conftest.py: tiny_run); resuming it
# needs the same overrides
TINY_RUN = [*TINY, "seed=3", "model.hidden_size=32"]
# export measurements cut short
# a 2-epoch model on 400 windows with a handful of positives: one flipped window moves F1
# by 0.1, so the INT8 recipe's default limit is tested on its own (test_export_steps.py)
QUICK = ["measure.repeats=20", "measure.windows=400", "export.max_metric_change=null"]


def run_cli(
    tool: str,
    *args: str,
    cwd: Path,
    expect_ok: bool = True,
    env: dict[str, str | None] | None = None,
    timeout: int = 300,
):
    full_env = {**os.environ, "PLANTML_OUTPUTS": str(cwd / "outputs"), **(env or {})}
    full_env = {k: v for k, v in full_env.items() if v is not None}  # env={"X": None} unsets X
    proc = subprocess.run(
        [str(BIN / tool), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env=full_env,
        timeout=timeout,
    )
    if expect_ok and proc.returncode != 0:
        raise AssertionError(
            f"{tool} {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
        )
    return proc


def run_dirs(root: Path, name: str) -> list[Path]:
    return sorted((root / "outputs" / name / "runs").glob("*"))


def metrics(run: Path) -> dict:
    return json.loads((run / "metrics.json").read_text())
