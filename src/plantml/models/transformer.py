"""Transformer encoder over sensor windows."""

from __future__ import annotations

import math

import torch
from torch import nn

from plantml.errors import ConfigError
from plantml.models.head import mlp_head

POSITIONAL = ("sinusoidal", "learned")
POOLING = ("mean", "cls")


def sinusoidal_positions(length: int, d_model: int) -> torch.Tensor:
    """The fixed sine / cosine position code of "Attention is all you need": ``(length, d_model)``."""
    position = torch.arange(length, dtype=torch.float32).unsqueeze(1)
    frequency = torch.exp(
        torch.arange(0, d_model, 2, dtype=torch.float32) * (-math.log(10000.0) / d_model)
    )
    code = torch.zeros(length, d_model)
    code[:, 0::2] = torch.sin(position * frequency)
    code[:, 1::2] = torch.cos(position * frequency[: d_model // 2])
    return code


def _exporting() -> bool:
    """True while an ONNX exporter (TorchScript trace or torch.export) runs the model."""
    return bool(
        torch.jit.is_tracing() or torch.onnx.is_in_onnx_export() or torch.compiler.is_exporting()
    )


class TransformerModel(nn.Module):
    """Pre-norm transformer encoder with a small MLP head.

    Input ``(batch, time, channels)`` float; output ``(batch, out_features)``.
    Each time step is projected to ``d_model``, given a position code and
    encoded by ``num_layers`` self-attention layers; the window is summarised
    by the mean over time (``pooling='mean'``) or by a learned class token
    (``pooling='cls'``) and mapped to the outputs by the head.

    Exports to ONNX with the TorchScript exporter (opset 17): PyTorch's fused
    inference "fast path" (``_transformer_encoder_layer_fwd``,
    ``_native_multi_head_attention``) has no ONNX form, so it is switched off
    while an exporter traces the model; eager inference keeps it.

    Args:
        in_features: channels per time step.
        out_features: outputs per window.
        d_model: width of the encoder; divisible by ``num_heads``.
        num_layers: encoder layers.
        num_heads: attention heads per layer.
        dim_feedforward: hidden width of each layer's feed-forward block.
        dropout: dropout in the encoder and the head.
        positional: ``sinusoidal`` (fixed) or ``learned`` (one embedding per position).
        pooling: ``mean`` over time or ``cls`` (a learned class token).
        max_len: longest window the position code covers.
        head_size: hidden width of the head (0: a single linear layer).
    """

    def __init__(
        self,
        in_features: int,
        out_features: int = 1,
        d_model: int = 64,
        num_layers: int = 2,
        num_heads: int = 4,
        dim_feedforward: int = 128,
        dropout: float = 0.1,
        positional: str = "sinusoidal",
        pooling: str = "mean",
        max_len: int = 2048,
        head_size: int = 32,
    ):
        super().__init__()
        if positional not in POSITIONAL:
            raise ConfigError(
                f"unknown model.positional {positional!r}; use one of {', '.join(POSITIONAL)}"
            )
        if pooling not in POOLING:
            raise ConfigError(f"unknown model.pooling {pooling!r}; use one of {', '.join(POOLING)}")
        if num_heads < 1 or d_model % num_heads:
            raise ConfigError(
                f"model.d_model={d_model} is not divisible by model.num_heads={num_heads}; "
                f"choose num_heads among the divisors of d_model (e.g. "
                f"{', '.join(str(h) for h in (1, 2, 4, 8) if d_model % h == 0)}) "
                "or change d_model"
            )
        if d_model % 2:
            raise ConfigError(f"model.d_model must be even (sine/cosine pairs), got {d_model}")
        if num_layers < 1 or max_len < 1:
            raise ConfigError(
                f"model.num_layers and model.max_len must be >= 1, got {num_layers}, {max_len}"
            )
        self.positional, self.pooling, self.max_len = positional, pooling, int(max_len)
        self.project = nn.Linear(in_features, d_model)
        if positional == "learned":
            self.position = nn.Parameter(torch.randn(max_len, d_model) * 0.02)
        else:
            self.register_buffer(
                "position", sinusoidal_positions(max_len, d_model), persistent=False
            )
        self.cls = nn.Parameter(torch.zeros(1, 1, d_model)) if pooling == "cls" else None
        self.dropout = nn.Dropout(dropout)
        layer = nn.TransformerEncoderLayer(
            d_model,
            num_heads,
            dim_feedforward,
            dropout,
            activation="gelu",
            batch_first=True,
            norm_first=True,
        )
        # nested tensors only help with padding masks, which fixed windows never have
        self.encoder = nn.TransformerEncoder(
            layer, num_layers, norm=nn.LayerNorm(d_model), enable_nested_tensor=False
        )
        self.head = mlp_head(d_model, head_size, out_features, dropout, nn.GELU)

    def _encode(self, h: torch.Tensor) -> torch.Tensor:
        if not _exporting():
            return self.encoder(h)
        enabled = torch.backends.mha.get_fastpath_enabled()
        torch.backends.mha.set_fastpath_enabled(False)
        try:
            return self.encoder(h)
        finally:
            torch.backends.mha.set_fastpath_enabled(enabled)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(batch, time, channels)`` → ``(batch, out_features)``."""
        # int(): a constant when traced, so the exported graph stores only the rows of the
        # position table this window uses (its time axis is fixed; only the batch is dynamic)
        length = int(x.shape[1])
        if length > self.max_len:
            raise ConfigError(
                f"the window has {length} time steps but model.max_len={self.max_len}; "
                f"set model.max_len={length} or more (a learned position code must then "
                "be trained again) or use shorter windows"
            )
        h = self.project(x) + self.position[:length]  # (batch, time, d_model)
        if self.cls is not None:
            h = torch.cat([self.cls.expand(h.shape[0], -1, -1), h], dim=1)
        h = self._encode(self.dropout(h))
        pooled = h[:, 0] if self.cls is not None else h.mean(dim=1)  # (batch, d_model)
        return self.head(pooled)
