"""The README's quick start, run as written on a fresh clone.

The commands of the README's "From there to the plant floor" block run one after the
other in a ``git clone`` of this repository (its ``.venv`` is this one, linked, so nothing
is installed again), after ``make train``. Two things are added, and only these: every
Hydra command gets a small training budget (the README's commands train for minutes),
and ``make`` is told that the shared environment is up to date (``-o .venv/.installed``).
If a command in the README stops running, or a step no longer finds what the step before
it wrote (the ``latest`` link, the bundle's sample rows), this test fails.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
HYDRA_TOOLS = ("plantml-train", "plantml-tune", "plantml-export", "plantml-eval", "plantml-data")
BUDGET = {
    "plantml-train": ["trainer.max_epochs=1", "trainer.limit_train_batches=8", "data.n_assets=8"],
    "plantml-tune": ["trainer.max_epochs=1", "trainer.limit_train_batches=4", "data.n_assets=8"],
    "plantml-export": [
        "measure.repeats=10",
        "measure.windows=300",
        "export.max_metric_change=null",
    ],
    "plantml-data": ["data.n_assets=3", "data.days=10"],
}


def readme_commands() -> list[list[str]]:
    """The commands of the quick start's plant-floor block, as argument lists."""
    text = (REPO / "README.md").read_text()
    section = text.split("From there to the plant floor", 1)[1]
    block = re.search(r"```bash\n(.*?)```", section, re.S).group(1)
    block = block.replace("\\\n", " ")
    commands = []
    for line in block.splitlines():
        line = line.split(" #", 1)[0].strip()
        if line:
            commands.append(shlex.split(line))
    return commands


def test_the_quick_start_block_is_what_this_test_runs():
    tools = [c[0] for c in readme_commands()]
    assert tools[:3] == ["plantml-tune", "plantml-export", "plantml-edge"]


@pytest.mark.slow
def test_readme_quick_start_runs_as_written_on_a_fresh_clone(tmp_path):
    clone = tmp_path / "plantml"
    subprocess.run(["git", "clone", "-q", str(REPO), str(clone)], check=True)
    (clone / ".venv").symlink_to(BIN.parent)
    env = {
        **os.environ,
        "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",  # as after source .venv/bin/activate
        "WANDB_MODE": "offline",
        "PLANTML_OUTPUTS": str(clone / "outputs"),
    }
    env.pop("PLANTML_ROOT", None)

    def run(argv: list[str]) -> subprocess.CompletedProcess:
        proc = subprocess.run(argv, cwd=clone, env=env, capture_output=True, text=True, timeout=900)
        assert proc.returncode == 0, (
            f"{' '.join(argv)}:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
        )
        return proc

    budget = " ".join(BUDGET["plantml-train"] + ["callbacks.progress_bar.refresh_rate=0"])
    run(["make", "-o", ".venv/.installed", "train", f"ARGS={budget}"])
    assert (clone / "outputs" / "synthetic_failure" / "latest" / "checkpoints").is_dir()
    for argv in readme_commands():
        extra = BUDGET.get(argv[0], []) if argv[0] in HYDRA_TOOLS else []
        run([*argv, *extra])
    alarms = (clone / "alarms.csv").read_text().splitlines()
    assert alarms[0].startswith("asset,time,condition,failure_probability,alarm")
    assert len(alarms) > 100
    assert (clone / "fleet.csv").stat().st_size > 10_000
