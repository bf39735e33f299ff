"""Plots are written without touching pyplot's backend (notebooks keep theirs)."""

from __future__ import annotations

import matplotlib
import numpy as np
import pandas as pd

from plantml.evaluation.outputs import (
    plot_by_condition,
    plot_precision_recall,
    plot_rul_trajectories,
)


def test_plots_write_pngs_and_leave_the_backend_alone(tmp_path):
    before = matplotlib.get_backend()
    rng = np.random.default_rng(0)
    pred = pd.DataFrame(
        {
            "asset": np.repeat(["a", "b"], 20),
            "time": np.tile(np.arange(20), 2),
            "condition": np.tile(["low", "high"], 20),
            "target": (rng.random(40) < 0.3).astype(float),
            "prediction": rng.random(40),
        }
    )
    plot_precision_recall(pred, 0.5, tmp_path / "pr.png")
    plot_rul_trajectories(pred, tmp_path / "rul.png", "cycle")
    metrics = {
        "val/recall": 0.5,
        "by_condition": {
            "val": {"low": {"recall": 0.4, "n": 20}, "high": {"recall": 0.6, "n": 20}}
        },
    }
    plot_by_condition(metrics, "failure", tmp_path / "cond.png")
    for name in ("pr.png", "rul.png", "cond.png"):
        assert (tmp_path / name).read_bytes()[:4] == b"\x89PNG"
    assert matplotlib.get_backend() == before
