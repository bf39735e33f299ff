"""Features computed from windows: time-domain statistics, spectral front ends, bearing physics.

- :mod:`plantml.features.stats`: ``WindowStats`` (torch) and ``window_stats`` (numpy).
- :mod:`plantml.features.spectral`: ``SpectralFrontEnd``, ``BandEnergies``, ``band_energies``:
  modules that go inside a model, so they export to ONNX with it.
- :mod:`plantml.features.bearing`: fault frequencies, envelope spectra, fault amplitudes.
"""

from plantml.features.bearing import (
    CWRU_DRIVE_END,
    CWRU_FAN_END,
    BearingGeometry,
    envelope_spectrum,
    fault_amplitudes,
    fault_frequencies,
)
from plantml.features.spectral import BandEnergies, SpectralFrontEnd, band_energies
from plantml.features.stats import WindowStats, feature_names, window_stats

__all__ = [
    "CWRU_DRIVE_END",
    "CWRU_FAN_END",
    "BandEnergies",
    "BearingGeometry",
    "SpectralFrontEnd",
    "WindowStats",
    "band_energies",
    "envelope_spectrum",
    "fault_amplitudes",
    "fault_frequencies",
    "feature_names",
    "window_stats",
]
