"""LSTM over sensor windows."""

from __future__ import annotations

import torch
from torch import nn


class LSTMModel(nn.Module):
    """Stacked LSTM with a small MLP head on the last time step.

    Input ``(batch, time, channels)`` float; output ``(batch, out_features)``
    (a RUL estimate, a failure logit). No dict inputs, no state between calls,
    so it exports to ONNX as it is.

    Args:
        in_features: channels per time step.
        out_features: outputs per window.
        hidden_size: LSTM width.
        num_layers: stacked LSTM layers.
        dropout: dropout between LSTM layers and in the head.
        bidirectional: read the window both ways.
        head_size: hidden width of the head (0: a single linear layer).
    """

    def __init__(
        self,
        in_features: int,
        out_features: int = 1,
        hidden_size: int = 64,
        num_layers: int = 2,
        dropout: float = 0.1,
        bidirectional: bool = False,
        head_size: int = 32,
    ):
        super().__init__()
        self.lstm = nn.LSTM(
            in_features,
            hidden_size,
            num_layers=num_layers,
            batch_first=True,
            dropout=dropout if num_layers > 1 else 0.0,
            bidirectional=bidirectional,
        )
        width = hidden_size * (2 if bidirectional else 1)
        if head_size:
            self.head = nn.Sequential(
                nn.Linear(width, head_size),
                nn.ReLU(),
                nn.Dropout(dropout),
                nn.Linear(head_size, out_features),
            )
        else:
            self.head = nn.Linear(width, out_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.lstm(x)  # (batch, time, width)
        return self.head(out[:, -1])
