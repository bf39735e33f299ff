"""Window statistics, spectral front ends and bearing physics against hand computations."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import stats as sstats

from plantml.errors import ConfigError
from plantml.features import (
    CWRU_DRIVE_END,
    CWRU_FAN_END,
    BandEnergies,
    SpectralFrontEnd,
    WindowStats,
    band_energies,
    envelope_spectrum,
    fault_amplitudes,
    fault_frequencies,
    feature_names,
    window_stats,
)
from plantml.features.stats import STATS


# -- window statistics --------------------------------------------------------------------
def _by_hand(w: np.ndarray) -> list[float]:
    """The statistics of one channel ``(time,)``, written out with numpy / scipy."""
    rms = np.sqrt(np.mean(w**2))
    peak = np.max(np.abs(w))
    return [
        np.mean(w),
        np.std(w),  # ddof=0
        rms,
        peak,
        peak / rms,
        sstats.kurtosis(w, fisher=True, bias=True),
        sstats.skew(w, bias=True),
        np.polyfit(np.arange(len(w)), w, 1)[0],
    ]


def test_window_stats_match_numpy_and_scipy():
    rng = np.random.default_rng(0)
    x = rng.gamma(2.0, size=(4, 50, 3)) + np.linspace(0, 2, 50)[None, :, None]
    expected = np.array([[v for c in range(3) for v in _by_hand(x[i, :, c])] for i in range(4)])
    np.testing.assert_allclose(window_stats(x), expected, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(window_stats(x[0]), expected[0], rtol=1e-10)
    out = WindowStats()(torch.from_numpy(x.astype(np.float32)))
    assert out.shape == (4, 3 * len(STATS))
    np.testing.assert_allclose(out.numpy(), expected, rtol=1e-4, atol=1e-5)


def test_window_stats_hand_values_and_degenerate_windows():
    w = np.array([[1.0], [2.0], [3.0], [4.0]])  # mean 2.5, var 1.25, rms sqrt(7.5), slope 1
    got = dict(zip(STATS, window_stats(w), strict=True))
    assert got["mean"] == pytest.approx(2.5) and got["std"] == pytest.approx(np.sqrt(1.25))
    assert got["rms"] == pytest.approx(np.sqrt(7.5)) and got["peak"] == 4.0
    assert got["crest"] == pytest.approx(4 / np.sqrt(7.5)) and got["slope"] == pytest.approx(1.0)
    assert got["skewness"] == pytest.approx(0.0) and got["kurtosis"] == pytest.approx(-1.36)
    flat = np.zeros((1, 10, 2), np.float32)
    for out in (window_stats(flat), WindowStats()(torch.from_numpy(flat)).numpy()):
        assert np.isfinite(out).all() and not out.any()
    names = feature_names(["vib_x", "vib_y"], ("rms", "kurtosis"))
    assert names == ["vib_x_rms", "vib_x_kurtosis", "vib_y_rms", "vib_y_kurtosis"]
    with pytest.raises(ConfigError, match="unknown window statistics"):
        WindowStats(("mean", "entropy"))


def test_window_stats_backpropagates():
    x = torch.randn(2, 16, 3, requires_grad=True)
    WindowStats()(x).sum().backward()
    assert torch.isfinite(x.grad).all()


# -- spectral front ends ---------------------------------------------------------------------
def _stft_by_hand(x: torch.Tensor, n_fft: int, hop: int, power: float) -> torch.Tensor:
    """``(batch, time, channels)`` → ``(batch, frames, channels * bins)`` with torch.stft."""
    per_channel = []
    for c in range(x.shape[2]):
        spec = torch.stft(
            x[:, :, c],
            n_fft,
            hop_length=hop,
            window=torch.hann_window(n_fft),
            center=True,
            pad_mode="reflect",
            return_complex=True,
        )
        per_channel.append(spec.abs().pow(power).transpose(1, 2))  # (batch, frames, bins)
    return torch.cat(per_channel, dim=-1)


@pytest.mark.parametrize("stft", ["torchaudio", "conv"])
@pytest.mark.parametrize("power", [2.0, 1.0])
def test_front_end_equals_torch_stft(stft, power):
    torch.manual_seed(0)
    x = torch.randn(3, 300, 2)
    front = SpectralFrontEnd(2, n_fft=64, hop_length=16, power=power, stft=stft)
    out = front(x)
    assert out.shape == (3, front.n_frames(300), 2 * 33) == (3, 19, 66)
    expected = torch.log1p(_stft_by_hand(x, 64, 16, power))
    tol = 1e-5 if stft == "torchaudio" else 1e-4  # the DFT as a convolution: float32 sums
    torch.testing.assert_close(out, expected, atol=tol, rtol=tol)
    raw = SpectralFrontEnd(2, n_fft=64, hop_length=16, power=power, stft=stft, log=False)(x)
    torch.testing.assert_close(raw, _stft_by_hand(x, 64, 16, power), atol=1e-5, rtol=tol)


def test_mel_and_bands_match_torchaudio():
    import torchaudio

    x = torch.randn(2, 512, 1)
    mel = torchaudio.transforms.MelSpectrogram(
        sample_rate=12000, n_fft=128, hop_length=32, n_mels=16
    )(x[:, :, 0])  # (batch, mels, frames)
    for stft in ("torchaudio", "conv"):
        front = SpectralFrontEnd(1, 128, 32, kind="mel", n_mels=16, log=False, stft=stft)
        torch.testing.assert_close(front(x), mel.transpose(1, 2), atol=1e-4, rtol=1e-4)
    banded = SpectralFrontEnd(1, 128, 32, kind="mel", n_mels=16, log=False, n_bands=4)(x)
    torch.testing.assert_close(banded, band_energies(mel.transpose(1, 2), 4))
    spec = torch.arange(10.0).expand(2, 10)
    assert band_energies(spec, 3).tolist()[0] == [0 + 1 + 2, 3 + 4 + 5 + 6, 7 + 8 + 9]
    assert BandEnergies(10, 3)(spec).shape == (2, 3)
    with pytest.raises(ConfigError, match="lower n_bands"):
        band_energies(spec, 11)


# -- bearing physics ---------------------------------------------------------------------------
# CWRU Bearing Data Center, fault frequencies as multiples of running speed (Hz)
CWRU_MULTIPLES = {
    "drive_end": (CWRU_DRIVE_END, {"bpfi": 5.4152, "bpfo": 3.5848, "ftf": 0.39828, "bdf": 4.7135}),
    "fan_end": (CWRU_FAN_END, {"bpfi": 4.9469, "bpfo": 3.0530, "ftf": 0.3817, "bdf": 3.9874}),
}


@pytest.mark.parametrize("end", list(CWRU_MULTIPLES))
def test_fault_frequencies_match_cwru_multiples(end):
    geometry, published = CWRU_MULTIPLES[end]
    multiples = geometry.frequencies(1.0)
    for name, value in published.items():
        assert multiples[name] == pytest.approx(value, rel=2e-3), name
    # CWRU's "rolling element" is twice the ball spin frequency
    assert multiples["bsf"] == pytest.approx(published["bdf"] / 2, rel=2e-3)
    at_speed = geometry.frequencies(1797 / 60)
    assert at_speed["bpfo"] == pytest.approx(multiples["bpfo"] * 1797 / 60)
    with pytest.raises(ConfigError, match="ball_diameter < pitch_diameter"):
        fault_frequencies(9, 2.0, 1.0, 0.0, 30.0)


def test_envelope_spectrum_finds_the_outer_race_fault():
    fs, shaft = 12000, 1797 / 60
    bpfo = CWRU_DRIVE_END.frequencies(shaft)["bpfo"]  # 107.4 Hz
    t = np.arange(fs) / fs  # one second
    rng = np.random.default_rng(0)
    carrier = np.cos(2 * np.pi * 3000 * t)
    x = (1 + 0.5 * np.cos(2 * np.pi * bpfo * t)) * carrier + 0.2 * rng.normal(size=len(t))
    freqs, amplitude = envelope_spectrum(x, fs, band=(2000, 4000))
    above_dc = freqs > 5
    peak = freqs[above_dc][np.argmax(amplitude[above_dc])]
    assert peak == pytest.approx(bpfo, abs=0.5)
    found = fault_amplitudes(x, fs, shaft, band=(2000, 4000))
    assert len(found) == 5 * 3
    assert max(found, key=found.get) == "bpfo_1x"
    assert found["bpfo_1x"] == pytest.approx(0.5, rel=0.05)  # the modulation depth
    assert found["bpfi_1x"] < 0.2 * found["bpfo_1x"]
    with pytest.raises(ConfigError, match="sample_rate / 2"):
        envelope_spectrum(x, fs, band=(2000, 7000))
