"""A feature-based baseline: window statistics, then a small MLP."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from plantml.features.stats import STATS, WindowStats
from plantml.models.head import mlp_head


class StatsModel(nn.Module):
    """Time-domain statistics per channel (:class:`~plantml.features.stats.WindowStats`) → MLP.

    The classical condition-monitoring baseline (RMS, crest factor, kurtosis,
    slope…) as one module, so that it trains with any task and exports with
    the model. Input ``(batch, time, channels)``; output ``(batch, out_features)``.
    The statistics are standardized by a BatchNorm before the MLP (their
    scales differ by orders of magnitude).

    Args:
        in_features: channels per time step.
        out_features: outputs per window (classes for the class task).
        stats: which statistics (default all of ``plantml.features.stats.STATS``).
        hidden_size: MLP width (0: a linear model on the statistics).
        dropout: dropout in the MLP.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int = 1,
        stats: Sequence[str] = STATS,
        hidden_size: int = 64,
        dropout: float = 0.1,
    ):
        super().__init__()
        self.features = WindowStats(stats)
        width = in_features * len(self.features.stats)
        self.norm = nn.BatchNorm1d(width)
        self.head = mlp_head(width, hidden_size, out_features, dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.norm(self.features(x)))
