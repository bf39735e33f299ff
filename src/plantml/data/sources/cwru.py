"""Case Western Reserve University (CWRU) bearing vibration data.

``root`` holds one folder per motor load, ``0HP/``, ``1HP/``, ``2HP/`` …, the
operating condition (column ``load_hp``). Each ``.mat`` file is one recording
(asset ``<load>HP/<file stem>``), its class read from the file name:
``normal_0_97`` is ``normal``, ``12k_Drive_End_IR007_1_106`` is ``IR007``,
``…_OR021@6_0_234`` is ``OR021``; ``fault_type`` (normal / inner / ball /
outer) and ``fault_diameter`` (inch) are the coarse parts of the class.

Rows are samples: ``time`` is the sample index over the sample rate in
seconds, ``DE`` (and ``FE``, ``BA`` if asked) the accelerations and ``rpm``
the recorded shaft speed, a setting column.

Sampling rate: the fault files are 12 kHz; CWRU's normal recordings are
reported to be 48 kHz. ``rates`` maps file stems to their true rate and each
recording is resampled to ``sample_rate`` (``scipy.signal.resample_poly``,
anti-aliased). The rate is also checked against the data:
:func:`estimate_rate` finds the shaft line (the fundamental of the harmonic
family near RPM/60) under the declared rate and a warning is logged when it
implies a rate more than 10 % away. ``rates_used`` and ``rates_estimated``
keep, per asset, the declared and the estimated rate.
"""

from __future__ import annotations

import logging
import re
from math import gcd
from pathlib import Path

import numpy as np
import pandas as pd

from plantml.data.sources.base import Source, check_split
from plantml.data.table import SensorTable
from plantml.errors import ConfigError, DataError

log = logging.getLogger(__name__)

CHANNELS = ("DE", "FE", "BA")
FAULT_TYPES = {"normal": "normal", "IR": "inner", "B": "ball", "OR": "outer"}
NOMINAL_RPM = {0: 1797.0, 1: 1772.0, 2: 1750.0, 3: 1730.0}
DEFAULT_RATES = {"normal_0_97": 48000}
RATE_TOLERANCE = 0.10
_CLASS = re.compile(r"(?:^|_)(normal|IR\d{3}|B\d{3}|OR\d{3})(?:@\d+)?(?:_|$)", re.IGNORECASE)
_LOAD_DIR = re.compile(r"^(\d+)\s*HP$", re.IGNORECASE)


def parse_class(stem: str) -> tuple[str, str, float]:
    """(class, fault type, fault diameter in inch) from a CWRU file stem.

    ``12k_Drive_End_OR021@6_0_234`` → ``("OR021", "outer", 0.021)``;
    ``normal_0_97`` → ``("normal", "normal", 0.0)``.
    """
    match = _CLASS.search(stem)
    if not match:
        raise DataError(
            f"cannot read the fault class from the CWRU file name {stem!r}; names look like "
            "normal_0_97.mat or 12k_Drive_End_IR007_1_106.mat (IR/B/OR + diameter in mils). "
            "Rename the file or remove it from data.root"
        )
    label = match.group(1)
    if label.lower() == "normal":
        return "normal", "normal", 0.0
    label = label.upper()
    kind = label.rstrip("0123456789")
    return label, FAULT_TYPES[kind], int(label[len(kind) :]) / 1000.0


def estimate_rate(
    x: np.ndarray,
    rate: float,
    rpm: float,
    ratios: tuple[float, ...] = (0.125, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0),
    threshold: float = 6.0,
) -> tuple[float, float]:
    """(apparent shaft frequency in Hz, implied sample rate) of ``x`` read at ``rate``.

    Read at a wrong rate, every line moves by the ratio of the declared to the
    true rate, so the shaft line (1x, at ``rpm / 60`` truly) shows up at
    ``ratio * rpm / 60``. For each candidate ``ratio`` (sample rates differ by
    powers of two: 12 vs 48 kHz is 1/4), from the lowest up, the line within
    ±1.5 % of ``ratio * rpm / 60`` and its 2x line are looked up in the
    amplitude spectrum; the first candidate where both stand ``threshold``
    times above the local median is the shaft line. Taking the lowest such
    fundamental, not the strongest line, keeps strong higher shaft (or mains)
    harmonics from posing as the 1x line; the 1x/2x pair at a fixed ratio
    keeps bearing lines (cage, ball-pass) out. Returns ``(nan, nan)`` when no
    candidate stands out.
    """
    from scipy import fft as sfft

    f_shaft = rpm / 60.0
    y = np.asarray(x, dtype=np.float64).ravel()
    y = (y - y.mean()) * np.hanning(len(y))
    n = sfft.next_fast_len(2 * len(y))
    amp = np.abs(sfft.rfft(y, n))
    df = rate / n

    def peak(centre: float, half_width: float) -> tuple[float, float]:
        """(frequency, height over the ±10 % median) of the highest bin near ``centre``."""
        w = max(half_width * centre, 2 * df)
        lo, hi = int((centre - w) / df), int(np.ceil((centre + w) / df)) + 1
        blo, bhi = int(0.9 * centre / df), int(np.ceil(1.1 * centre / df)) + 1
        if hi >= len(amp) or lo < 4:
            return float("nan"), 0.0
        i = lo + int(np.argmax(amp[lo:hi]))
        return i * df, float(amp[i] / (np.median(amp[blo:bhi]) + 1e-300))

    for ratio in sorted(ratios):
        f1, h1 = peak(ratio * f_shaft, 0.015)
        if h1 < threshold:
            continue
        _, h2 = peak(2 * f1, 0.003)
        if h2 >= threshold:
            return f1, float(rate * f_shaft / f1)
    return float("nan"), float("nan")


class CWRUSource(Source):
    """Reader for CWRU drive-end bearing recordings.

    Args:
        root: folder holding ``0HP/``, ``1HP/`` … with the ``.mat`` files.
        loads: motor loads (HP) to read (default: every load folder present).
        channels: accelerometers to keep, of ``DE`` (drive end), ``FE`` (fan
            end), ``BA`` (base).
        sample_rate: the rate (Hz) every recording is resampled to.
        rates: true rate per file stem where it is not ``sample_rate``
            (default ``{"normal_0_97": 48000}``, as reported publicly).
        check_rate: estimate each recording's rate from its shaft line and
            warn when the declared rate is more than 10 % off.
    """

    def __init__(
        self,
        root: str | Path,
        loads: list[int] | None = None,
        channels: tuple[str, ...] | list[str] = ("DE",),
        sample_rate: int = 12000,
        rates: dict[str, int] | None = None,
        check_rate: bool = True,
    ):
        self.root = Path(root).expanduser()
        self.loads = [int(v) for v in loads] if loads is not None else None
        self.channels = [str(c).upper() for c in (channels or ())]
        unknown = [c for c in self.channels if c not in CHANNELS]
        if unknown or not self.channels:
            raise ConfigError(
                f"unknown CWRU channels {unknown or self.channels} (data.channels); "
                f"use a list of {', '.join(CHANNELS)}"
            )
        if int(sample_rate) <= 0:
            raise ConfigError(f"data.sample_rate must be a positive rate in Hz, got {sample_rate}")
        self.sample_rate = int(sample_rate)
        self.rates = {
            str(k): int(v) for k, v in (DEFAULT_RATES if rates is None else rates).items()
        }
        self.check_rate = bool(check_rate)
        self.rates_used: dict[str, int] = {}
        self.rates_estimated: dict[str, float] = {}

    def present_loads(self) -> dict[int, Path]:
        """Load (HP) → folder, for the ``<n>HP`` folders under ``root``."""
        if not self.root.is_dir():
            parent = self.root.parent
            there = sorted(p.name for p in parent.iterdir())[:15] if parent.is_dir() else []
            raise DataError(
                f"CWRU folder {str(self.root)!r} does not exist"
                + (f" ({str(parent)!r} holds: {', '.join(there) or 'nothing'})" if there else "")
                + "; set data.root to the folder holding 0HP/, 1HP/, …"
            )
        found = {}
        for path in self.root.iterdir():
            match = _LOAD_DIR.match(path.name)
            if path.is_dir() and match:
                found[int(match.group(1))] = path
        if not found:
            present = sorted(p.name for p in self.root.iterdir())
            raise DataError(
                f"no load folders (0HP/, 1HP/ …) in {str(self.root)!r}; it holds: "
                f"{', '.join(present) or 'nothing'}. Set data.root to the CWRU data folder"
            )
        return dict(sorted(found.items()))

    def files(self, split: str = "train") -> list[Path]:
        check_split(split)
        present = self.present_loads()
        loads = list(present) if self.loads is None else self.loads
        unknown = [v for v in loads if v not in present]
        if unknown:
            raise ConfigError(
                f"unknown CWRU load(s) {unknown} HP (data.loads); the loads in "
                f"{str(self.root)!r} are: {', '.join(map(str, present))}"
            )
        out = []
        for load in loads:
            mats = sorted(present[load].glob("*.mat"))
            if not mats:
                raise DataError(
                    f"{present[load]} holds no .mat files; remove the folder or refill it"
                )
            out += mats
        return out

    def _read(self, path: Path) -> tuple[dict[str, np.ndarray], float]:
        from scipy.io import loadmat

        try:
            mat = loadmat(path)
        except Exception as exc:  # scipy raises several types for a bad file
            raise DataError(f"cannot read {path} as a MATLAB file: {exc}") from None
        keys = [k for k in mat if not k.startswith("__")]
        number = path.stem.rsplit("_", 1)[-1]
        arrays = {}
        for channel in self.channels:
            matches = sorted(k for k in keys if k.endswith(f"_{channel}_time"))
            if not matches:
                raise DataError(
                    f"{path} has no {channel} channel (no key ending in _{channel}_time; keys: "
                    f"{', '.join(keys)}); drop {channel} from data.channels"
                )
            # some files hold a second recording's keys: prefer the file's own number
            own = [
                k for k in matches if k.lstrip("X").split("_")[0].lstrip("0") == number.lstrip("0")
            ]
            arrays[channel] = np.asarray(mat[(own or matches)[0]], dtype=np.float64).ravel()
        rpm_keys = sorted(k for k in keys if k.endswith("RPM"))
        rpm = float(np.asarray(mat[rpm_keys[0]]).ravel()[0]) if rpm_keys else float("nan")
        lengths = {len(v) for v in arrays.values()}
        if len(lengths) > 1:
            n = min(lengths)
            arrays = {k: v[:n] for k, v in arrays.items()}
        return arrays, rpm

    def _resample(self, x: np.ndarray, rate: int) -> np.ndarray:
        if rate == self.sample_rate:
            return x
        from scipy.signal import resample_poly

        g = gcd(rate, self.sample_rate)
        return resample_poly(x, self.sample_rate // g, rate // g)

    def load(self, split: str = "train") -> SensorTable:
        """Every selected recording, resampled to ``sample_rate`` (the same for every split)."""
        frames = []
        for path in self.files(split):
            load = int(_LOAD_DIR.match(path.parent.name).group(1))
            label, fault_type, diameter = parse_class(path.stem)
            arrays, rpm = self._read(path)
            if not np.isfinite(rpm) or rpm <= 0:
                rpm = NOMINAL_RPM.get(load, float("nan"))
                log.warning("%s has no RPM value; using the nominal %s rpm", path.name, rpm)
            asset = f"{load}HP/{path.stem}"
            rate = int(self.rates.get(path.stem, self.sample_rate))
            self.rates_used[asset] = rate
            if self.check_rate and np.isfinite(rpm):
                self._check(asset, arrays[self.channels[0]], rate, rpm)
            arrays = {k: self._resample(v, rate) for k, v in arrays.items()}
            n = len(next(iter(arrays.values())))
            frame = pd.DataFrame(
                {"asset": np.full(n, asset, dtype=object), "time": np.arange(n) / self.sample_rate}
            )
            for channel, values in arrays.items():
                frame[channel] = values.astype(np.float32)
            frame["rpm"] = np.float32(rpm)
            frame["load_hp"] = np.int64(load)
            frame["fault"] = label
            frame["fault_type"] = fault_type
            frame["fault_diameter"] = np.float32(diameter)
            frames.append(frame)
        frame = pd.concat(frames, ignore_index=True)
        return SensorTable(
            frame=frame,
            asset_column="asset",
            time_column="time",
            sensor_columns=list(self.channels),
            setting_columns=["rpm"],
            condition_column="load_hp",
            name=f"CWRU ({len(frames)} recordings, {self.sample_rate} Hz)",
            time_unit="s",
        )

    def _check(self, asset: str, x: np.ndarray, rate: int, rpm: float) -> None:
        apparent, estimated = estimate_rate(x, rate, rpm)
        self.rates_estimated[asset] = estimated
        if not np.isfinite(estimated):
            log.warning("%s: no shaft line found to check the %d Hz rate", asset, rate)
        elif abs(estimated / rate - 1) > RATE_TOLERANCE:
            log.warning(
                "%s: read at %d Hz its shaft line is at %.2f Hz, not rpm/60 = %.2f Hz: the "
                "recording looks sampled at about %.0f Hz. Set data.rates to map %r to its "
                "true rate",
                asset,
                rate,
                apparent,
                rpm / 60,
                estimated,
                asset.split("/", 1)[1],
            )
