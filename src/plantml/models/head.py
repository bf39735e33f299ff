"""The small MLP head every window model ends in."""

from __future__ import annotations

from torch import nn


def mlp_head(
    width: int,
    head_size: int,
    out_features: int,
    dropout: float = 0.0,
    activation: type[nn.Module] = nn.ReLU,
) -> nn.Module:
    """``(batch, width)`` → ``(batch, out_features)``: Linear–activation–Dropout–Linear.

    ``head_size`` 0 gives a single linear layer.
    """
    if not head_size:
        return nn.Linear(width, out_features)
    return nn.Sequential(
        nn.Linear(width, head_size),
        activation(),
        nn.Dropout(dropout),
        nn.Linear(head_size, out_features),
    )
