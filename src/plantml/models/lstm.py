"""Recurrent (LSTM or GRU) model over sensor windows."""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

from plantml.errors import ConfigError
from plantml.models.head import mlp_head


class LSTMModel(nn.Module):
    """Stacked LSTM (or GRU) with a small MLP head on the last time step.

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
        cell: ``lstm`` or ``gru`` (fewer parameters; ONNX Runtime cannot
            quantize GRU to INT8).
    """

    CELLS: ClassVar[dict[str, type[nn.RNNBase]]] = {"lstm": nn.LSTM, "gru": nn.GRU}

    def __init__(
        self,
        in_features: int,
        out_features: int = 1,
        hidden_size: int = 64,
        num_layers: int = 2,
        dropout: float = 0.1,
        bidirectional: bool = False,
        head_size: int = 32,
        cell: str = "lstm",
    ):
        super().__init__()
        if cell not in self.CELLS:
            raise ConfigError(f"unknown model.cell {cell!r}; use one of {', '.join(self.CELLS)}")
        self.cell = cell
        self.lstm = self.CELLS[cell](
            in_features,
            hidden_size,
            num_layers=num_layers,
            batch_first=True,
            dropout=dropout if num_layers > 1 else 0.0,
            bidirectional=bidirectional,
        )
        width = hidden_size * (2 if bidirectional else 1)
        self.head = mlp_head(width, head_size, out_features, dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.lstm(x)  # (batch, time, width)
        return self.head(out[:, -1])
