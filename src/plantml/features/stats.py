"""Time-domain statistics of a window, as a torch module and as a numpy function.

Conventions (the same in both; population moments, i.e. ``bias=True`` in
``scipy.stats``, ``ddof=0`` in numpy), per channel over the window's ``T`` steps:

- ``mean``: arithmetic mean.
- ``std``: population standard deviation, ``sqrt(m2)`` with ``m_k = mean((x - mean)^k)``.
- ``rms``: ``sqrt(mean(x^2))``.
- ``peak``: ``max |x|``.
- ``crest``: ``peak / rms`` (0 for an all-zero window).
- ``kurtosis``: excess (Fisher) kurtosis ``m4 / m2^2 - 3``, as
  ``scipy.stats.kurtosis(x, fisher=True, bias=True)``; 0 for a constant window.
- ``skewness``: ``m3 / m2^1.5``, as ``scipy.stats.skew(x, bias=True)``; 0 for a
  constant window.
- ``slope``: least-squares slope of ``x`` against the step index ``0..T-1``
  (units per step); 0 for a one-step window.
- ``last``: the window's last value (not in the default set ``STATS``; the classical
  models use it, and with one-row windows it is the row itself).

Outputs are channel-major: all statistics of channel 0, then channel 1, …
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from plantml.errors import ConfigError

STATS = ("mean", "std", "rms", "peak", "crest", "kurtosis", "skewness", "slope")
AVAILABLE = (*STATS, "last")
_TINY = 1e-12


def _check(stats: Sequence[str]) -> tuple[str, ...]:
    stats = tuple(stats)
    unknown = [s for s in stats if s not in AVAILABLE]
    if unknown or not stats:
        raise ConfigError(
            f"unknown window statistics {unknown or '(none given)'}; use some of "
            f"{', '.join(AVAILABLE)}"
        )
    return stats


def feature_names(channels: Sequence[str], stats: Sequence[str] = STATS) -> list[str]:
    """Column names ``<channel>_<stat>`` in the order of :class:`WindowStats` outputs."""
    return [f"{c}_{s}" for c in channels for s in _check(stats)]


class WindowStats(nn.Module):
    """Per-channel window statistics: ``(batch, time, channels)`` → ``(batch, channels * len(stats))``.

    See the module docstring for the definitions. Differentiable, no
    parameters; exports to ONNX with the TorchScript exporter.
    """

    def __init__(self, stats: Sequence[str] = STATS):
        super().__init__()
        self.stats = _check(stats)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(batch, time, channels)`` → ``(batch, channels * len(stats))``."""
        length = x.shape[1]
        mean = x.mean(dim=1)
        centred = x - mean.unsqueeze(1)
        m2 = centred.square().mean(dim=1)
        flat = m2 <= _TINY
        safe_m2 = torch.where(flat, torch.ones_like(m2), m2)
        rms = x.square().mean(dim=1).sqrt()
        peak = x.abs().amax(dim=1)
        values = {}
        for name in self.stats:
            if name == "mean":
                values[name] = mean
            elif name == "std":
                values[name] = m2.sqrt()
            elif name == "rms":
                values[name] = rms
            elif name == "peak":
                values[name] = peak
            elif name == "crest":
                values[name] = torch.where(rms > _TINY, peak / rms.clamp_min(_TINY), 0.0)
            elif name == "kurtosis":
                m4 = centred.pow(4).mean(dim=1)
                values[name] = torch.where(flat, 0.0, m4 / safe_m2.square() - 3.0)
            elif name == "skewness":
                m3 = centred.pow(3).mean(dim=1)
                values[name] = torch.where(flat, 0.0, m3 / safe_m2.pow(1.5))
            elif name == "last":
                values[name] = x[:, -1]
            else:  # slope
                t = torch.arange(length, dtype=x.dtype, device=x.device)
                t = (t - t.mean()).view(1, -1, 1)
                values[name] = (t * centred).sum(dim=1) / t.square().sum().clamp_min(_TINY)
        out = torch.stack([values[name] for name in self.stats], dim=-1)  # (batch, C, stats)
        return out.flatten(1)


def window_stats(x: np.ndarray, stats: Sequence[str] = STATS) -> np.ndarray:
    """The numbers of :class:`WindowStats` in numpy (float64), for feature tables.

    ``x``: ``(time, channels)`` → ``(channels * len(stats),)``, or
    ``(n, time, channels)`` → ``(n, channels * len(stats))``.
    """
    stats = _check(stats)
    x = np.asarray(x, dtype=np.float64)
    if x.ndim not in (2, 3):
        raise ConfigError(
            f"window_stats takes (time, channels) or (n, time, channels), got {x.shape}"
        )
    single = x.ndim == 2
    if single:
        x = x[None]
    mean = x.mean(axis=1)
    centred = x - mean[:, None]
    m2 = (centred**2).mean(axis=1)
    flat = m2 <= _TINY
    safe_m2 = np.where(flat, 1.0, m2)
    rms = np.sqrt((x**2).mean(axis=1))
    peak = np.abs(x).max(axis=1)
    t = np.arange(x.shape[1], dtype=np.float64)
    t -= t.mean()
    values = {
        "mean": mean,
        "std": np.sqrt(m2),
        "rms": rms,
        "peak": peak,
        "crest": np.where(rms > _TINY, peak / np.maximum(rms, _TINY), 0.0),
        "kurtosis": np.where(flat, 0.0, (centred**4).mean(axis=1) / safe_m2**2 - 3.0),
        "skewness": np.where(flat, 0.0, (centred**3).mean(axis=1) / safe_m2**1.5),
        "slope": (t[None, :, None] * centred).sum(axis=1) / max((t**2).sum(), _TINY),
        "last": x[:, -1],
    }
    out = np.stack([values[name] for name in stats], axis=-1).reshape(len(x), -1)
    return out[0] if single else out
