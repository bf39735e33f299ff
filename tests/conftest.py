"""Thread limits for every test, tiny fleets built in the tests, the real data folder.

The limits are set here, at the top, before numpy or torch is imported (pytest
imports this file before any test module) and so reach every library and every
process a test starts: a busy machine slows the suite down in proportion instead
of tenfold. ``PLANTML_TEST_THREADS`` changes the count (default 1).
"""

from __future__ import annotations

import os

from plantml.threads import limit_threads

TEST_THREADS = int(os.environ.get("PLANTML_TEST_THREADS", "1"))
limit_threads(TEST_THREADS)

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from plantml.data.table import SensorTable

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("PLANTML_DATA", REPO.parent / "shared" / "data"))


def make_fleet(
    n_assets: int = 6,
    rows: tuple[int, int] = (60, 120),
    n_sensors: int = 3,
    seed: int = 0,
    settings: bool = False,
) -> SensorTable:
    """Run-to-failure assets with cycle time, sensors drifting towards failure."""
    rng = np.random.default_rng(seed)
    frames = []
    for a in range(n_assets):
        n = int(rng.integers(*rows))
        cycle = np.arange(1, n + 1)
        wear = cycle / n
        data = {"unit": a + 1, "cycle": cycle}
        for s in range(n_sensors):
            data[f"s{s}"] = 10 * s + wear * (s + 1) + rng.normal(0, 0.05, n)
        if settings:
            data["op"] = rng.choice([0.0, 10.0, 20.0], size=n) + rng.normal(0, 0.01, n)
        data["failure"] = (cycle == n).astype(np.int8)
        frames.append(pd.DataFrame(data))
    frame = pd.concat(frames, ignore_index=True)
    return SensorTable(
        frame=frame,
        asset_column="unit",
        time_column="cycle",
        sensor_columns=[f"s{s}" for s in range(n_sensors)],
        setting_columns=["op"] if settings else [],
        failure_column="failure",
        name="tiny fleet",
    )


@pytest.fixture
def fleet() -> SensorTable:
    return make_fleet()


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real datasets not found at {SHARED_DATA} (set PLANTML_DATA)")
    return SHARED_DATA


@pytest.fixture(autouse=True)
def _torch_threads():
    """Every test starts with torch at the test thread count (a test may have changed it)."""
    if "torch" in sys.modules or importlib.util.find_spec("torch") is not None:
        import torch

        torch.set_num_threads(TEST_THREADS)
