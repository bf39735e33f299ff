"""Rolling-bearing physics: fault frequencies from geometry, envelope spectra, fault amplitudes.

A local defect on a race or a ball strikes once per pass and makes the
vibration's high-frequency resonance ring in bursts; the *envelope* of the
band-passed signal repeats at the fault frequency, so its spectrum shows a
peak there. With ``r = (ball_diameter / pitch_diameter) * cos(contact_angle)``
and ``f`` the shaft frequency (Hz), for a stationary outer race:

- ``ftf  = f / 2 * (1 - r)``            cage (fundamental train) frequency
- ``bpfo = n_balls * f / 2 * (1 - r)``  ball pass frequency, outer race
- ``bpfi = n_balls * f / 2 * (1 + r)``  ball pass frequency, inner race
- ``bsf  = pitch / (2 * ball) * f * (1 - r^2)``  ball *spin* frequency
- ``bdf  = 2 * bsf``                    ball defect frequency

A ball defect touches both races once per spin, so it shows at ``2 * bsf``.
The CWRU bearing data centre's table calls this the "rolling element"
frequency: its 4.7135 × shaft speed for the drive-end SKF 6205 is ``2 * bsf``
(``bsf`` itself is 2.3567 ×). Here ``bsf`` is the spin frequency and ``bdf`` the
CWRU convention.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import signal as sps

from plantml.errors import ConfigError

FAULTS = ("bpfo", "bpfi", "bsf", "bdf", "ftf")


@dataclass(frozen=True)
class BearingGeometry:
    """A rolling bearing's geometry (diameters in any one unit)."""

    n_balls: int
    ball_diameter: float
    pitch_diameter: float
    contact_angle_deg: float = 0.0
    name: str = ""

    def frequencies(self, shaft_hz: float) -> dict[str, float]:
        """Fault frequencies in Hz at ``shaft_hz`` (see :func:`fault_frequencies`)."""
        return fault_frequencies(
            self.n_balls, self.ball_diameter, self.pitch_diameter, self.contact_angle_deg, shaft_hz
        )


#: CWRU drive-end bearing (dimensions in inches).
CWRU_DRIVE_END = BearingGeometry(9, 0.3126, 1.537, 0.0, "SKF 6205-2RS JEM (CWRU drive end)")
#: CWRU fan-end bearing; its published multiples (inner 4.9469, outer 3.0530) imply 8 balls.
CWRU_FAN_END = BearingGeometry(8, 0.2656, 1.122, 0.0, "SKF 6203-2RS JEM (CWRU fan end)")


def fault_frequencies(
    n_balls: int,
    ball_diameter: float,
    pitch_diameter: float,
    contact_angle_deg: float,
    shaft_hz: float,
) -> dict[str, float]:
    """``{"bpfo", "bpfi", "bsf", "bdf", "ftf"}`` in Hz (``shaft_hz=1``: multiples of shaft speed).

    ``bsf`` is the ball spin frequency, ``bdf = 2 * bsf`` the ball defect
    frequency (CWRU's "rolling element" column); see the module docstring.
    """
    if n_balls < 1 or ball_diameter <= 0 or pitch_diameter <= ball_diameter:
        raise ConfigError(
            f"bearing geometry needs n_balls >= 1 and 0 < ball_diameter < pitch_diameter, got "
            f"{n_balls}, {ball_diameter}, {pitch_diameter}"
        )
    r = ball_diameter / pitch_diameter * math.cos(math.radians(contact_angle_deg))
    bsf = pitch_diameter / (2.0 * ball_diameter) * shaft_hz * (1.0 - r * r)
    return {
        "bpfo": n_balls * shaft_hz / 2.0 * (1.0 - r),
        "bpfi": n_balls * shaft_hz / 2.0 * (1.0 + r),
        "bsf": bsf,
        "bdf": 2.0 * bsf,
        "ftf": shaft_hz / 2.0 * (1.0 - r),
    }


def envelope_spectrum(
    signal: np.ndarray,
    sample_rate: float,
    band: tuple[float, float] | None = None,
    order: int = 4,
    zero_pad: int = 4,
) -> tuple[np.ndarray, np.ndarray]:
    """Single-sided amplitude spectrum of the signal's Hilbert envelope.

    ``signal`` ``(n,)`` → ``(freqs (m // 2 + 1,), amplitude (m // 2 + 1,))`` with
    ``m = zero_pad * n``. With ``band=(low_hz, high_hz)`` the signal is first
    band-passed (zero-phase Butterworth of ``order``) around the resonance the
    impacts excite. The envelope's mean is removed, a Hann window applied and
    the FFT zero-padded ``zero_pad`` times, so that a sinusoidal envelope
    component of amplitude ``a`` shows as ``a`` within ~1 % even between bins
    (the resolution is still ``sample_rate / n``).
    """
    x = np.asarray(signal, dtype=np.float64)
    if x.ndim != 1 or len(x) < 8:
        raise ConfigError(f"envelope_spectrum takes one signal (n,) with n >= 8, got {x.shape}")
    if band is not None:
        low, high = band
        if not 0 < low < high < sample_rate / 2:
            raise ConfigError(
                f"band {band} must satisfy 0 < low < high < sample_rate / 2 = {sample_rate / 2}"
            )
        sos = sps.butter(order, [low, high], btype="bandpass", fs=sample_rate, output="sos")
        x = sps.sosfiltfilt(sos, x)
    if zero_pad < 1:
        raise ConfigError(f"zero_pad must be >= 1, got {zero_pad}")
    envelope = np.abs(sps.hilbert(x))
    envelope -= envelope.mean()
    window = np.hanning(len(x))
    n_fft = int(zero_pad) * len(x)
    amplitude = np.abs(np.fft.rfft(envelope * window, n_fft)) * 2.0 / window.sum()
    return np.fft.rfftfreq(n_fft, 1.0 / sample_rate), amplitude


def fault_amplitudes(
    signal: np.ndarray,
    sample_rate: float,
    shaft_hz: float,
    geometry: BearingGeometry = CWRU_DRIVE_END,
    harmonics: int = 3,
    tolerance_hz: float | None = None,
    band: tuple[float, float] | None = None,
) -> dict[str, float]:
    """Envelope-spectrum amplitude at each fault frequency and its harmonics.

    Returns ``{"bpfo_1x": a, "bpfo_2x": …, "bpfi_1x": …}`` (the keys of
    :func:`fault_frequencies` × ``1..harmonics``): the largest amplitude within
    ``tolerance_hz`` of ``k * frequency``. The default tolerance is two
    frequency bins or 1 % of the frequency, whichever is larger (shaft speed
    slips a little under load).
    """
    if harmonics < 1:
        raise ConfigError(f"harmonics must be >= 1, got {harmonics}")
    freqs, amplitude = envelope_spectrum(signal, sample_rate, band)
    resolution = sample_rate / len(signal)
    out = {}
    for name, base in geometry.frequencies(shaft_hz).items():
        for k in range(1, harmonics + 1):
            target = k * base
            tol = tolerance_hz if tolerance_hz is not None else max(2 * resolution, 0.01 * target)
            near = (freqs >= target - tol) & (freqs <= target + tol)
            out[f"{name}_{k}x"] = float(amplitude[near].max()) if near.any() else float("nan")
    return out
