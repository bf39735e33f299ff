"""Runs the slow integration tests share: one tiny training run and its fp32 bundle.

Session-scoped, so the slow tier trains and exports them once, through the installed
entry points, however many test modules read them. Tests that need a run of their own
(resume, a left-out condition, sweeps) still train it themselves.
"""

from __future__ import annotations

from pathlib import Path
from subprocess import CompletedProcess
from typing import NamedTuple

import pytest

from tests.integration.helpers import QUICK, TINY_RUN, run_cli, run_dirs


class TinyRun(NamedTuple):
    run: Path  # outputs/synthetic_failure/runs/<time>
    ckpt: Path  # its checkpoints/best.ckpt
    proc: CompletedProcess  # plantml-train's process: stdout and stderr


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> TinyRun:
    """``plantml-train`` with ``TINY_RUN``: two short epochs on a 10-pump fleet."""
    cwd = tmp_path_factory.mktemp("tiny_run")
    proc = run_cli("plantml-train", *TINY_RUN, cwd=cwd)
    (run,) = run_dirs(cwd, "synthetic_failure")
    return TinyRun(run, run / "checkpoints" / "best.ckpt", proc)


@pytest.fixture(scope="session")
def fp32_export(tiny_run, tmp_path_factory) -> Path:
    """``plantml-export export=fp32`` of the tiny run: the export folder (bundle/ inside)."""
    cwd = tmp_path_factory.mktemp("fp32_export")
    run_cli(
        "plantml-export",
        f"ckpt_path={tiny_run.ckpt}",
        "export=fp32",
        f"export_dir={cwd / 'export'}",
        *QUICK,
        cwd=cwd,
    )
    return cwd / "export" / "synthetic_failure-fp32"
