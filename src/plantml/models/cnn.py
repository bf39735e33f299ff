"""1-D convolutional model over sensor windows (plain, WDCNN-like or TCN-style residual)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from plantml.errors import ConfigError
from plantml.models.head import mlp_head

POOLING = ("mean", "max")
NORMS = ("batch", "none")


class ConvBlock(nn.Module):
    """Pad → Conv1d → norm → ReLU → dropout on ``(batch, channels, time)``.

    The padding keeps ``ceil(time / stride)`` steps: ``causal`` pads only the
    past, so step ``t`` of the output sees inputs up to ``t`` alone.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        dilation: int = 1,
        norm: str = "batch",
        dropout: float = 0.0,
        causal: bool = False,
    ):
        super().__init__()
        total = dilation * (kernel_size - 1)
        self.padding = (total, 0) if causal else (total // 2, total - total // 2)
        self.conv = nn.Conv1d(
            in_channels, out_channels, kernel_size, stride=stride, dilation=dilation
        )
        self.norm = nn.BatchNorm1d(out_channels) if norm == "batch" else nn.Identity()
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(batch, in_channels, time)`` → ``(batch, out_channels, ceil(time / stride))``."""
        if any(self.padding):
            x = F.pad(x, self.padding)
        x = self.conv(x)
        return self.dropout(F.relu(self.norm(x)))


class ResidualBlock(nn.Module):
    """Two dilated :class:`ConvBlock` s plus a skip connection (a TCN block).

    The skip is a strided 1x1 convolution when the width or the stride changes.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        dilation: int = 1,
        norm: str = "batch",
        dropout: float = 0.0,
        causal: bool = False,
    ):
        super().__init__()
        self.first = ConvBlock(
            in_channels, out_channels, kernel_size, stride, dilation, norm, dropout, causal
        )
        self.second = ConvBlock(
            out_channels, out_channels, kernel_size, 1, dilation, norm, dropout, causal
        )
        if in_channels != out_channels or stride != 1:
            self.skip: nn.Module = nn.Conv1d(in_channels, out_channels, 1, stride=stride)
        else:
            self.skip = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(batch, in_channels, time)`` → ``(batch, out_channels, ceil(time / stride))``."""
        return F.relu(self.second(self.first(x)) + self.skip(x))


def _ints(value, name: str, length: int | None = None) -> tuple[int, ...]:
    values = (value,) if isinstance(value, int) else tuple(int(v) for v in value)
    if not values or any(v < 1 for v in values):
        raise ConfigError(f"model.{name} must hold integers >= 1, got {list(values)}")
    if length is not None and len(values) != length:
        raise ConfigError(
            f"model.{name} has {len(values)} entries but model.channels has {length}; "
            f"give one {name[:-1]} per block (or one number for all)"
        )
    return values


class CNNModel(nn.Module):
    """A stack of 1-D convolutions over time, global pooling and an MLP head.

    Input ``(batch, time, channels)`` float (transposed to ``(batch, channels,
    time)`` inside); output ``(batch, out_features)``. Block ``i`` has
    ``channels[i]`` filters, stride ``strides[i]`` and dilation
    ``dilation_growth ** i``; each block keeps ``ceil(time / stride)`` steps, so
    any window length works.

    - Slow process data (C-MAPSS, 30 steps): the defaults.
    - Raw vibration (1024–4096 samples): downsample early with a wide first
      kernel, as WDCNN does, e.g. ``first_kernel_size=64, strides=(8, 2, 2)``.
    - Long memory: ``dilation_growth=2`` turns the blocks into residual TCN
      blocks whose receptive field doubles per block; ``causal=True`` pads only
      the past.

    Args:
        in_features: channels per time step.
        out_features: outputs per window.
        channels: filters per block (the number of blocks).
        kernel_size: kernel width of every block but the first.
        first_kernel_size: kernel width of the first block (default ``kernel_size``).
        strides: stride per block (one number for all, default 1: no downsampling).
        dilation_growth: dilation of block ``i`` is ``dilation_growth ** i``;
            above 1 the blocks are residual.
        dropout: dropout after each convolution and in the head.
        pooling: global ``mean`` or ``max`` over time.
        head_size: hidden width of the head (0: a single linear layer).
        norm: ``batch`` (BatchNorm, folded into the convolution on export) or ``none``.
        causal: pad only the past.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int = 1,
        channels: Sequence[int] = (32, 64, 64),
        kernel_size: int = 7,
        first_kernel_size: int | None = None,
        strides: int | Sequence[int] = 1,
        dilation_growth: int = 1,
        dropout: float = 0.1,
        pooling: str = "mean",
        head_size: int = 32,
        norm: str = "batch",
        causal: bool = False,
    ):
        super().__init__()
        if pooling not in POOLING:
            raise ConfigError(f"unknown model.pooling {pooling!r}; use one of {', '.join(POOLING)}")
        if norm not in NORMS:
            raise ConfigError(f"unknown model.norm {norm!r}; use one of {', '.join(NORMS)}")
        channels = _ints(channels, "channels")
        strides = _ints(strides, "strides")
        if len(strides) == 1:
            strides = strides * len(channels)
        strides = _ints(strides, "strides", len(channels))
        kernel_size = _ints(kernel_size, "kernel_size")[0]
        first = _ints(first_kernel_size or kernel_size, "first_kernel_size")[0]
        growth = _ints(dilation_growth, "dilation_growth")[0]
        block = ResidualBlock if growth > 1 else ConvBlock
        self.pooling = pooling
        layers, width = [], in_features
        for i, (out, stride) in enumerate(zip(channels, strides, strict=True)):
            k = first if i == 0 else kernel_size
            layers.append(block(width, out, k, stride, growth**i, norm, dropout, causal))
            width = out
        self.blocks = nn.Sequential(*layers)
        self.head = mlp_head(width, head_size, out_features, dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(batch, time, channels)`` → ``(batch, out_features)``."""
        h = self.blocks(x.transpose(1, 2))  # (batch, width, time')
        pooled = h.amax(dim=-1) if self.pooling == "max" else h.mean(dim=-1)
        return self.head(pooled)
