"""Autoencoders that reconstruct sensor windows, for anomaly detection.

A model trained to reconstruct normal operation reconstructs unusual windows
badly: the reconstruction error is the anomaly score. Both models map
``(batch, time, channels)`` to a reconstruction of the same shape;
:class:`ReconstructionScore` turns one into a scorer ``window → (batch,)``
for export (one ONNX graph, the error computed inside it).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from plantml.errors import ConfigError

SCORES = ("mse", "mae")


def reconstruction_error(x: torch.Tensor, recon: torch.Tensor, score: str = "mse") -> torch.Tensor:
    """Elementwise error ``(batch, time, channels)``: squared (``mse``) or absolute (``mae``)."""
    diff = recon.float() - x.float()
    return diff * diff if score == "mse" else diff.abs()


def check_score(score: str) -> str:
    if score not in SCORES:
        raise ConfigError(f"unknown task.score {score!r}; use one of {', '.join(SCORES)}")
    return score


class LSTMAutoencoder(nn.Module):
    """LSTM encoder → latent vector → repeated over time → LSTM decoder → per-step linear.

    Input ``(batch, time, channels)``; output the reconstruction, same shape.

    Args:
        in_features: channels per time step.
        out_features: ignored (the builder passes it to every model).
        hidden_size: width of the encoder and decoder LSTMs.
        latent_size: width of the bottleneck.
        num_layers: stacked LSTM layers in encoder and decoder.
        dropout: dropout between stacked LSTM layers.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int = 1,
        hidden_size: int = 32,
        latent_size: int = 16,
        num_layers: int = 1,
        dropout: float = 0.0,
    ):
        super().__init__()
        for name, value in (
            ("hidden_size", hidden_size),
            ("latent_size", latent_size),
            ("num_layers", num_layers),
        ):
            if int(value) < 1:
                raise ConfigError(f"model.{name} must be >= 1, got {value}")
        between = dropout if num_layers > 1 else 0.0
        self.encoder = nn.LSTM(
            in_features, hidden_size, num_layers, batch_first=True, dropout=between
        )
        self.to_latent = nn.Linear(hidden_size, latent_size)
        self.decoder = nn.LSTM(
            latent_size, hidden_size, num_layers, batch_first=True, dropout=between
        )
        self.output = nn.Linear(hidden_size, in_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(batch, time, channels)`` → reconstruction ``(batch, time, channels)``."""
        encoded, _ = self.encoder(x)  # (batch, time, hidden)
        latent = self.to_latent(encoded[:, -1])  # (batch, latent)
        repeated = latent.unsqueeze(1).repeat(1, x.shape[1], 1)  # (batch, time, latent)
        decoded, _ = self.decoder(repeated)
        return self.output(decoded)


class ConvAutoencoder(nn.Module):
    """Strided Conv1d encoder and ConvTranspose1d decoder over time.

    Each encoder block halves the time axis (stride 2); the decoder mirrors it
    and the output is cropped (or zero-padded) to the input length, so any
    window length works. Input and output ``(batch, time, channels)``.

    Args:
        in_features: channels per time step.
        out_features: ignored (the builder passes it to every model).
        channels: filters per encoder block (the last is the bottleneck width).
        kernel_size: kernel width of every (transposed) convolution.
        dropout: dropout after each hidden activation.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int = 1,
        channels: Sequence[int] = (32, 16),
        kernel_size: int = 7,
        dropout: float = 0.0,
    ):
        super().__init__()
        channels = (channels,) if isinstance(channels, int) else tuple(int(c) for c in channels)
        if not channels or any(c < 1 for c in channels):
            raise ConfigError(f"model.channels must hold integers >= 1, got {list(channels)}")
        if int(kernel_size) < 1:
            raise ConfigError(f"model.kernel_size must be >= 1, got {kernel_size}")
        k, pad = int(kernel_size), int(kernel_size) // 2
        encoder: list[nn.Module] = []
        width = in_features
        for c in channels:
            encoder += [
                nn.Conv1d(width, c, k, stride=2, padding=pad),
                nn.ReLU(),
                nn.Dropout(dropout),
            ]
            width = c
        decoder: list[nn.Module] = []
        widths = [*reversed(channels[:-1]), in_features]
        for i, c in enumerate(widths):
            decoder.append(nn.ConvTranspose1d(width, c, k, stride=2, padding=pad, output_padding=1))
            if i < len(widths) - 1:  # the last layer is linear: targets are standardized
                decoder += [nn.ReLU(), nn.Dropout(dropout)]
            width = c
        self.encoder = nn.Sequential(*encoder)
        self.decoder = nn.Sequential(*decoder)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(batch, time, channels)`` → reconstruction ``(batch, time, channels)``."""
        time = x.shape[1]
        h = self.decoder(self.encoder(x.transpose(1, 2)))  # (batch, channels, time')
        if h.shape[-1] < time:  # a Python branch: the window length is fixed in an export
            h = F.pad(h, (0, time - h.shape[-1]))
        return h[..., :time].transpose(1, 2)


class ReconstructionScore(nn.Module):
    """An autoencoder plus its error: window ``(batch, time, channels)`` → score ``(batch,)``.

    The score is the mean error over time and channels; this is the module
    exported to ONNX for anomaly tasks (``model`` keeps the autoencoder, as
    :class:`plantml.export.onnx.Predictor` does).
    """

    def __init__(self, model: nn.Module, score: str = "mse"):
        super().__init__()
        self.model = model
        self.score = check_score(score)

    def step_scores(self, window: torch.Tensor) -> torch.Tensor:
        """Error per time step ``(batch, time)`` (mean over channels)."""
        return reconstruction_error(window, self.model(window), self.score).mean(-1)

    def forward(self, window: torch.Tensor) -> torch.Tensor:
        """Mean reconstruction error per window ``(batch,)``."""
        return reconstruction_error(window, self.model(window), self.score).mean(dim=(1, 2))
