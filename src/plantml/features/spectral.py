"""Spectral front ends: modules that turn raw windows into spectrogram frames inside a model.

They are ``nn.Module`` s with fixed (not learned) weights, meant to be the first
layer of a model so that the exported ONNX graph takes the raw window and the
edge device needs no signal processing code.

Two implementations of the short-time Fourier transform, selected by ``stft``:

- ``torchaudio`` (the default): ``torchaudio.transforms.Spectrogram``, i.e.
  ``torch.stft``. Exact, and the ONNX graph holds one ``STFT`` op. TorchScript
  cannot export ``torch.stft``; ``plantml.export.onnx`` sees the
  ``Spectrogram`` module and picks the dynamo exporter (opset 18), which
  exports it in torch 2.11 with outputs equal to torch within 1e-6.
- ``conv``: the same transform as a ``Conv1d`` with fixed DFT kernels (real and
  imaginary parts times the Hann window). Equal to ``torch.stft`` within float32
  rounding (~1e-5 relative); exports with the TorchScript exporter (opset 17,
  faster to export). Use it when a runtime lacks the ONNX ``STFT`` op; avoid it
  with static INT8 (below).

Both centre the frames (reflect padding by ``n_fft // 2``), use a periodic Hann
window of ``n_fft`` samples and no normalisation, as torchaudio's defaults do.

INT8 (static QDQ): with ``stft='torchaudio'`` and no mel / bands the spectrum
stays float until its logarithm (see :func:`_log1p`), so only the backbone is
quantized. The mel / band matrix is a MatMul on the *linear* power and the
``conv`` STFT's outputs are Conv outputs: the quantizer calibrates them to 8
bits, which flattens low-energy bins. (A trained spectral CNN: INT8 with
``torchaudio`` kept 99.9 % of alarms, with ``conv`` 93.6 %.) There, check the
INT8 variant's metrics or keep the model float.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import torch
import torchaudio
from torch import nn

from plantml.errors import ConfigError

KINDS = ("spectrogram", "mel")
STFTS = ("torchaudio", "conv")


def band_matrix(n_bins: int, n_bands: int) -> torch.Tensor:
    """``(n_bins, n_bands)`` 0/1 matrix summing contiguous, near-equal runs of bins."""
    if not 1 <= n_bands <= n_bins:
        raise ConfigError(
            f"n_bands={n_bands} must be between 1 and the number of frequency bins ({n_bins}); "
            "lower n_bands or raise n_fft (or n_mels)"
        )
    edges = np.linspace(0, n_bins, n_bands + 1).round().astype(int)
    matrix = torch.zeros(n_bins, n_bands)
    for band, (lo, hi) in enumerate(itertools.pairwise(edges)):
        matrix[lo:hi, band] = 1.0
    return matrix


def band_energies(spec: torch.Tensor, n_bands: int) -> torch.Tensor:
    """Sum a power spectrum ``(..., bins)`` into ``n_bands`` equal-width bands ``(..., n_bands)``."""
    return spec @ band_matrix(spec.shape[-1], n_bands).to(spec)


class BandEnergies(nn.Module):
    """:func:`band_energies` as a module (a fixed matmul): ``(..., n_bins)`` → ``(..., n_bands)``."""

    def __init__(self, n_bins: int, n_bands: int):
        super().__init__()
        self.register_buffer("bands", band_matrix(n_bins, n_bands), persistent=False)

    def forward(self, spec: torch.Tensor) -> torch.Tensor:
        return spec @ self.bands


class ConvSTFT(nn.Module):
    """``|STFT|^power`` as a strided Conv1d with fixed DFT kernels.

    ``(signals, time)`` → ``(signals, freq, frames)`` with ``freq = n_fft // 2 + 1``
    and ``frames = time // hop_length + 1``, equal to
    ``torch.stft(..., window=hann_window(n_fft), center=True, pad_mode='reflect')
    .abs() ** power``. (Not named ``STFT`` on purpose: the exporter would pick dynamo.)
    """

    def __init__(self, n_fft: int, hop_length: int, power: float = 2.0):
        super().__init__()
        self.n_fft, self.hop_length, self.power = n_fft, hop_length, float(power)
        n = torch.arange(n_fft, dtype=torch.float64)
        k = torch.arange(n_fft // 2 + 1, dtype=torch.float64).unsqueeze(1)
        window = torch.hann_window(n_fft, periodic=True, dtype=torch.float64)
        angle = 2.0 * math.pi * k * n / n_fft
        kernels = torch.cat([torch.cos(angle) * window, -torch.sin(angle) * window])
        self.register_buffer("kernels", kernels.unsqueeze(1).float(), persistent=False)

    def forward(self, signal: torch.Tensor) -> torch.Tensor:
        padded = nn.functional.pad(signal.unsqueeze(1), (self.n_fft // 2,) * 2, mode="reflect")
        parts = nn.functional.conv1d(padded, self.kernels, stride=self.hop_length)
        real, imag = parts.chunk(2, dim=1)
        power = real.square() + imag.square()  # (signals, freq, frames)
        if self.power == 2.0:
            return power
        return power.clamp_min(1e-20).pow(self.power / 2.0)


class SpectralFrontEnd(nn.Module):
    """Per-channel (log) spectrogram frames of a window.

    ``(batch, time, channels)`` → ``(batch, frames, channels * bins)`` with
    ``frames = time // hop_length + 1`` and, per channel, ``bins`` values in
    channel-major order (all bins of channel 0, then channel 1, …):

    - ``kind='spectrogram'``: ``n_fft // 2 + 1`` bins of ``|STFT|^power``;
    - ``kind='mel'``: ``n_mels`` triangular mel filters (HTK scale, no
      normalisation, 0 to ``sample_rate / 2`` Hz, as ``torchaudio.transforms.MelScale``);
    - ``n_bands``: then summed into that many equal-width bands;
    - ``log``: ``log1p`` of the result.

    Args:
        in_features: channels of the window.
        n_fft: FFT length (and Hann window length) in samples.
        hop_length: samples between frames.
        kind: ``spectrogram`` or ``mel``.
        n_mels: mel filters (``kind='mel'``).
        sample_rate: samples per second (mel scale only).
        log: apply ``log1p``.
        power: 2.0 power spectrum, 1.0 magnitude.
        n_bands: sum bins into this many bands (None: keep every bin).
        stft: ``torchaudio`` (the default: exact, dynamo export, INT8-safe) or ``conv``
            (TorchScript export); see the module docstring.
    """

    def __init__(
        self,
        in_features: int,
        n_fft: int = 256,
        hop_length: int = 64,
        kind: str = "spectrogram",
        n_mels: int = 32,
        sample_rate: int = 12000,
        log: bool = True,
        power: float = 2.0,
        n_bands: int | None = None,
        stft: str = "torchaudio",
    ):
        super().__init__()
        if kind not in KINDS:
            raise ConfigError(f"unknown front_end.kind {kind!r}; use one of {', '.join(KINDS)}")
        if stft not in STFTS:
            raise ConfigError(f"unknown front_end.stft {stft!r}; use one of {', '.join(STFTS)}")
        if n_fft < 2 or hop_length < 1:
            raise ConfigError(
                f"front_end.n_fft must be >= 2 and hop_length >= 1, got {n_fft}, {hop_length}"
            )
        if power <= 0:
            raise ConfigError(f"front_end.power must be > 0 (2: power, 1: magnitude), got {power}")
        self.in_features = in_features
        self.n_fft, self.hop_length, self.log = n_fft, hop_length, log
        if stft == "conv":
            self.stft: nn.Module = ConvSTFT(n_fft, hop_length, power)
        else:
            self.stft = torchaudio.transforms.Spectrogram(
                n_fft=n_fft, hop_length=hop_length, power=power, center=True, pad_mode="reflect"
            )
        bins = n_fft // 2 + 1
        reduce = None  # (bins, bins_out): mel filters and / or band sums, one fixed matrix
        if kind == "mel":
            reduce = torchaudio.functional.melscale_fbanks(
                bins, 0.0, sample_rate / 2.0, n_mels, sample_rate, norm=None, mel_scale="htk"
            )
            bins = n_mels
        if n_bands:
            bands = band_matrix(bins, n_bands)
            reduce = bands if reduce is None else reduce @ bands
            bins = n_bands
        # stored transposed: applied from the left to (signals, freq, frames)
        self.register_buffer(
            "reduce", None if reduce is None else reduce.T.contiguous(), persistent=False
        )
        self.bins = int(bins)
        self.out_features = in_features * self.bins

    def n_frames(self, window_length: int) -> int:
        """Frames produced for a window of ``window_length`` samples."""
        return window_length // self.hop_length + 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(batch, time, channels)`` → ``(batch, frames, channels * bins)``."""
        length, channels = x.shape[1], x.shape[2]
        if length <= self.n_fft // 2:
            raise ConfigError(
                f"the window has {length} samples, too short for front_end.n_fft={self.n_fft} "
                f"(centred frames need more than n_fft / 2); use n_fft <= {2 * length - 2} "
                "or longer windows"
            )
        signal = x.transpose(1, 2).reshape(-1, length)  # (batch * channels, time)
        spec = self.stft(signal)  # (batch * channels, freq, frames)
        if self.reduce is not None:
            spec = self.reduce @ spec  # (batch * channels, bins, frames)
        if self.log:
            spec = _log1p(spec)
        frames = spec.shape[-1]
        spec = spec.reshape(-1, channels, self.bins, frames).permute(0, 3, 1, 2)
        return spec.reshape(-1, frames, channels * self.bins)


def _log1p(power: torch.Tensor) -> torch.Tensor:
    """``log1p`` written as ``softplus(log(power))``, the same numbers.

    ``torch.log1p`` exports as ``Add`` + ``Log``; ONNX Runtime's static INT8
    quantizer puts Q/DQ pairs around every ``Add`` (and every Transpose /
    Reshape), i.e. on the *linear* power spectrum, whose range (many decades)
    8 bits cannot hold: low-energy bins become 0. ``Log`` and ``Softplus`` are
    never quantized, so the spectrum stays float until it is logarithmic.
    (A power of exactly 0 gives ``softplus(-inf) = 0``, as ``log1p(0)``.)
    """
    return nn.functional.softplus(torch.log(power))
