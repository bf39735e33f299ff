"""A simulated fleet of centrifugal pumps with the faults real plant data has.

The physics, per asset, on a 15-minute base grid:

* **Operating regimes** switch as a Markov chain of piecewise-constant segments.
  Each regime has a load (fraction of rated), a speed (rpm), a long-run share of
  time and a mean segment length; the next segment's regime is drawn in
  proportion to ``share / mean_hours`` (a self-transition just lengthens the
  segment), so each regime takes ``share`` of the time. Defaults: ``low`` (0.4,
  1200 rpm, 30 %), ``nominal`` (0.7, 1500 rpm, 55 %), ``high`` (1.0, 1800 rpm,
  15 %, short bursts).
* **Health** ``h = 1 - D**2`` follows a damage ``D`` that grows at
  ``dD/dt = r * (0.2 + load**2)`` with a per-asset rate ``r`` (lognormal, mean
  life about 30 days at the average load, times ``failure_scale``). Hence
  ``dh/dt = -2 r (0.2 + load**2) sqrt(1 - h)``: faster with load and with age,
  fastest near the end of life. Assets start at a random age. When ``h`` reaches
  0 the asset fails (``failure = 1`` on that row), is down for repair
  (``repair_hours``, no rows) and comes back with ``h`` about 1 and
  ``maintenance = 1`` on its first row. Preventive maintenance (a Poisson
  process, ``maintenance_per_day``) removes 40-100 % of the damage and is marked
  ``maintenance = 1`` without a gap, so not every life ends in a failure.
* **Sensors**, with ``s = speed / 1500`` and wear ``w = 1 - h``:
  ``vibration_rms`` (mm/s, every 15 min) ``≈ v0 s² (0.8 + 0.4 load) + 5 w² s``;
  ``motor_current`` (A, every 15 min) ``≈ i0 (0.25 + 0.75 load) s (1 + 0.15 w)``;
  ``pressure`` (bar, every 30 min) ``≈ p0 s² (1 - 0.08 w)``;
  ``bearing_temp`` (°C, every 60 min) follows ``dT/dt = (k P_loss - h_c (T - T_amb)) / C``
  with a 1.5 h time constant, ``k P_loss / h_c = 25 load s + 10 s² + 30 w² s`` and an
  ambient temperature with a daily cycle (±5 °C, warmest at 15:00). Each has
  measurement noise and a resolution (0.01 mm/s, 0.1 A, 0.01 bar, 0.1 °C).
* **Faults** (all off with ``faults=False``): reading timestamps jittered by up
  to ``jitter_seconds`` (the first may precede ``start``); on a share
  ``skewed_fraction`` of assets the temperature logger's clock runs
  ``skew_minutes`` late; dropouts (single missing readings); offline gaps (no
  rows for hours); stuck sensors (last value repeated for hours); spikes (×5 to
  ×20); sentinel values (:data:`SENTINELS`, e.g. ``bearing_temp`` 6553.5,
  ``pressure`` -999); a few exactly duplicated rows.

The table is wide and sparse: one row per (asset, reading time), the union of
the three loggers' timestamps (15-min vibration/current logger, 30-min
pressure logger, 60-min temperature logger); a sensor is NaN where it was not
read. ``load``, ``speed_rpm`` and ``regime`` are filled on every row. With
``faults=False`` the loggers' timestamps coincide and merge into one row per
15 minutes. The trip at a failure is logged by the 15-min logger alone.

Measured with the defaults (24 assets × 90 days, seed 0): 349,397 rows
(202,446 with ``faults=False``); 47 failures, 0-5 per asset (median 2, 19 of
24 assets fail 1-3 times) and 67 preventive maintenances; 2.2 % of hourly grid
points lie within 24 h before a failure (2.1-2.6 % over seeds 0-3); regimes
take 30 / 56 / 15 % (low / nominal / high) of the time; generated in about
0.35 s on one core (0.2 s without faults).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy.signal import lfilter

from plantml.data.sources.base import Source
from plantml.data.table import SensorTable
from plantml.errors import ConfigError

SPLITS = ("train", "val", "test")
SENSORS = ("vibration_rms", "motor_current", "pressure", "bearing_temp")
STEP_H = 0.25
# Each logger: the sensors it reads and its interval in base steps.
LOGGERS = ((("vibration_rms", "motor_current"), 1), (("pressure",), 2), (("bearing_temp",), 4))
RESOLUTION = {"vibration_rms": 0.01, "motor_current": 0.1, "pressure": 0.01, "bearing_temp": 0.1}
SENTINELS = {
    "vibration_rms": 9999.0,
    "motor_current": -1.0,
    "pressure": -999.0,
    "bearing_temp": 6553.5,
}
DEFAULT_REGIMES: dict[str, dict[str, float]] = {
    "low": {"load": 0.4, "speed_rpm": 1200.0, "share": 0.30, "mean_hours": 18.0},
    "nominal": {"load": 0.7, "speed_rpm": 1500.0, "share": 0.55, "mean_hours": 36.0},
    "high": {"load": 1.0, "speed_rpm": 1800.0, "share": 0.15, "mean_hours": 8.0},
}
_REGIME_KEYS = ("load", "speed_rpm", "share", "mean_hours")
NOMINAL_LIFE_H = 30 * 24.0
WEAR_EXPONENT = 2.0
# Damage per hour is r * (A + B load²); r is set so that the average regime mix lasts one life.
_A, _B = 0.2, 1.0


class SyntheticFleet(Source):
    """A seeded, deterministic fleet of simulated pumps (see the module docstring).

    Args:
        n_assets: number of pumps, named ``pump_000``, ``pump_001``, ...
        days: simulated days per asset, from ``start``.
        seed: seed of the whole fleet; asset ``i`` draws from its own child
            generator, so adding assets leaves the first ones unchanged.
        regimes: ``{name: {load, speed_rpm, share, mean_hours}}``; default
            :data:`DEFAULT_REGIMES`.
        faults: add the data faults below; ``False`` gives clean data.
        failure_scale: multiplies every asset's degradation rate.
        maintenance_per_day: rate of preventive maintenance per asset.
        repair_hours: ``[min, max]`` downtime after a failure.
        initial_age: ``[min, max]`` of the damage ``D`` (0 new, 1 failed) at the start.
        include_health: add the hidden ``health`` column (not a sensor).
        start: timestamp of the first base step.
        jitter_seconds: each reading's timestamp moves by up to ± this.
        skew_minutes: constant lag of the temperature logger on skewed assets.
        skewed_fraction: chance that an asset's temperature logger is skewed.
        dropout_rate: chance that a single reading is missing.
        gaps_per_day: rate of offline gaps (no rows) per asset.
        gap_hours: ``[min, max]`` length of an offline gap.
        stuck_per_day: rate of stuck episodes per asset and sensor.
        stuck_hours: ``[min, max]`` length of a stuck episode.
        spike_rate: chance that a reading is multiplied by 5 to 20.
        sentinel_rate: chance that a reading is replaced by its sentinel value.
        duplicate_rate: chance that a row is written twice.
    """

    more_data_hint = "simulate more pumps or days (data.n_assets, data.days)"

    def __init__(
        self,
        n_assets: int = 24,
        days: float = 90.0,
        seed: int = 0,
        regimes: Mapping[str, Mapping[str, float]] | None = None,
        faults: bool = True,
        failure_scale: float = 1.0,
        maintenance_per_day: float = 1 / 40,
        repair_hours: Sequence[float] = (6.0, 48.0),
        initial_age: Sequence[float] = (0.0, 0.9),
        include_health: bool = False,
        start: str = "2024-01-01",
        jitter_seconds: float = 60.0,
        skew_minutes: float = 7.0,
        skewed_fraction: float = 0.25,
        dropout_rate: float = 0.01,
        gaps_per_day: float = 1 / 30,
        gap_hours: Sequence[float] = (2.0, 12.0),
        stuck_per_day: float = 1 / 60,
        stuck_hours: Sequence[float] = (2.0, 12.0),
        spike_rate: float = 0.001,
        sentinel_rate: float = 0.0003,
        duplicate_rate: float = 0.0005,
    ) -> None:
        if int(n_assets) < 1 or float(days) <= 0:
            raise ConfigError(
                f"synthetic fleet needs n_assets >= 1 and days > 0 (got n_assets={n_assets}, "
                f"days={days}); set data.n_assets / data.days"
            )
        self.n_assets, self.days, self.seed = int(n_assets), float(days), int(seed)
        self.regimes = _check_regimes(DEFAULT_REGIMES if regimes is None else regimes)
        self.faults, self.failure_scale = bool(faults), float(failure_scale)
        self.maintenance_per_day = float(maintenance_per_day)
        self.repair_hours = _check_range("repair_hours", repair_hours)
        self.initial_age = _check_range("initial_age", initial_age, upper=0.99)
        self.include_health, self.start = bool(include_health), pd.Timestamp(start)
        self.jitter_seconds, self.skew_minutes = float(jitter_seconds), float(skew_minutes)
        self.gap_hours = _check_range("gap_hours", gap_hours)
        self.stuck_hours = _check_range("stuck_hours", stuck_hours)
        self.gaps_per_day, self.stuck_per_day = float(gaps_per_day), float(stuck_per_day)
        nonnegative = ("failure_scale", "maintenance_per_day", "gaps_per_day", "stuck_per_day")
        for name in (*nonnegative, "jitter_seconds"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name}={getattr(self, name)} must be >= 0 (0 turns it off)")
        rates = {
            "skewed_fraction": skewed_fraction,
            "dropout_rate": dropout_rate,
            "spike_rate": spike_rate,
            "sentinel_rate": sentinel_rate,
            "duplicate_rate": duplicate_rate,
        }
        for name, value in rates.items():
            if not 0.0 <= float(value) <= 1.0:
                raise ConfigError(f"{name}={value} is not a probability; use a value in [0, 1]")
            setattr(self, name, float(value))
        self._frame: pd.DataFrame | None = None

    def load(self, split: str = "train") -> SensorTable:
        """The whole fleet as one table, whatever the split (splits are made by asset later).

        Returns a :class:`SensorTable` with ``n_assets`` assets and roughly
        ``days * 96`` rows per asset (about ``days * 158`` with faults).
        """
        if split not in SPLITS:
            raise ConfigError(
                f"split {split!r} is not known to the synthetic fleet; use one of "
                + ", ".join(repr(s) for s in SPLITS)
            )
        if self._frame is None:
            self._frame = self._generate()
        return SensorTable(
            frame=self._frame.copy(),
            asset_column="asset",
            time_column="timestamp",
            sensor_columns=list(SENSORS),
            setting_columns=["load", "speed_rpm"],
            condition_column="regime",
            failure_column="failure",
            maintenance_column="maintenance",
            name="synthetic fleet",
            time_unit="h",
        )

    def _generate(self) -> pd.DataFrame:
        n_steps = round(self.days * 24 / STEP_H)
        children = np.random.default_rng(self.seed).spawn(self.n_assets)
        parts = [self._asset(n_steps, *child.spawn(2)) for child in children]
        cols = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
        names = np.array(list(self.regimes))
        frame = pd.DataFrame(
            {
                "asset": np.repeat(
                    [f"pump_{i:03d}" for i in range(self.n_assets)], [len(p["step"]) for p in parts]
                ),
                "timestamp": (self.start.as_unit("ns").value + cols["ns"]).view("datetime64[ns]"),
                "regime": names[cols["regime"]],
                "load": cols["load"],
                "speed_rpm": cols["speed_rpm"],
                **{s: cols[s] for s in SENSORS},
                "failure": cols["failure"].astype(np.int8),
                "maintenance": cols["maintenance"].astype(np.int8),
            }
        )
        if self.include_health:
            frame["health"] = cols["health"]
        return frame

    def _asset(
        self, n: int, phys: np.random.Generator, flt: np.random.Generator
    ) -> dict[str, np.ndarray]:
        """Simulate one asset on the base grid and turn its readings into rows."""
        regime = self._regime_steps(phys, n)
        spec = [self.regimes[r] for r in self.regimes]
        load = np.array([r["load"] for r in spec])[regime] + phys.normal(0, 0.02, n)
        load = np.clip(load, 0.05, 1.2)
        speed = np.array([r["speed_rpm"] for r in spec])[regime] + phys.normal(0, 3.0, n)
        health, running, fails, maints = self._health(phys, load, n)
        clean = self._sensors(phys, load, speed, health, running, n)

        logged = np.ones(n, dtype=bool)
        if self.faults:
            self._offline_gaps(flt, logged, np.concatenate([fails, maints]))
        step_ns = int(STEP_H * 3600e9)
        jitter = self.jitter_seconds * 1e9 if self.faults else 0.0
        skewed = self.faults and flt.random() < self.skewed_fraction
        is_fail = np.zeros(n, dtype=bool)
        is_fail[fails] = True
        steps, ns, values = [], [], []
        for sensors, every in LOGGERS:
            idx = np.flatnonzero(running & logged & (np.arange(n) % every == 0))
            if every > 1:  # the trip is logged by the fast logger alone
                idx = idx[~is_fail[idx]]
            t = idx * step_ns + np.round(flt.uniform(-jitter, jitter, len(idx)), -6).astype(
                np.int64
            )
            if skewed and "bearing_temp" in sensors:
                t += int(self.skew_minutes * 60e9)
            block = np.full((len(idx), len(SENSORS)), np.nan)
            for s in sensors:
                block[:, SENSORS.index(s)] = self._reading_faults(flt, s, clean[s][idx], every)
            steps.append(idx)
            ns.append(t)
            values.append(block)
        return self._rows(
            flt,
            np.concatenate(steps),
            np.concatenate(ns),
            np.vstack(values),
            is_fail,
            maints,
            regime,
            load,
            speed,
            health,
        )

    def _regime_steps(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """Regime code per base step: Markov segments of gamma-distributed length."""
        mean_h = np.array([r["mean_hours"] for r in self.regimes.values()])
        pick = np.array([r["share"] for r in self.regimes.values()]) / mean_h
        codes, lengths, total = [], [], 0
        while total < n:
            k = rng.choice(len(pick), p=pick / pick.sum())
            steps = max(4, round(rng.gamma(2.0, mean_h[k] / 2.0) / STEP_H))
            codes.append(k)
            lengths.append(steps)
            total += steps
        return np.repeat(codes, lengths)[:n]

    def _health(
        self, rng: np.random.Generator, load: np.ndarray, n: int
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Health per step, running mask, failure steps and maintenance steps."""
        mix = sum(r["share"] * (_A + _B * r["load"] ** 2) for r in self.regimes.values())
        rate = self.failure_scale * rng.lognormal(-0.045, 0.3) / (NOMINAL_LIFE_H * mix)
        # damage[s] = damage accrued before step s, so a life from t has D[s] = d0 + W[s] - W[t]
        W = np.concatenate([[0.0], np.cumsum(rate * (_A + _B * load**2) * STEP_H)])
        pm = np.sort(rng.integers(1, n, rng.poisson(self.maintenance_per_day * self.days)))
        damage, running = np.ones(n), np.ones(n, dtype=bool)
        fails, maints = [], []
        t, d0 = 0, rng.uniform(*self.initial_age)
        while t < n:
            f = t + int(np.searchsorted(W[t:n] - W[t], 1.0 - d0))
            later = pm[pm > t]
            p = int(later[0]) if len(later) else n
            end = min(f, p, n)
            damage[t:end] = d0 + W[t:end] - W[t]
            if end == n:
                break
            if p < f:  # preventive maintenance: partial or full repair, no downtime
                d0 = (d0 + W[p] - W[t]) * rng.uniform(0.0, 0.6)
                maints.append(p)
                t = p
                continue
            fails.append(f)
            down = round(rng.uniform(*self.repair_hours) / STEP_H)
            running[f + 1 : f + 1 + down] = False
            t, d0 = f + 1 + down, rng.uniform(0.0, 0.03)
            if t < n:
                maints.append(t)
        health = 1.0 - np.clip(damage, 0.0, 1.0) ** WEAR_EXPONENT
        return health, running, np.array(fails, dtype=int), np.array(maints, dtype=int)

    def _sensors(
        self,
        rng: np.random.Generator,
        load: np.ndarray,
        speed: np.ndarray,
        health: np.ndarray,
        running: np.ndarray,
        n: int,
    ) -> dict[str, np.ndarray]:
        """Noisy sensor values on every base step, rounded to their resolution."""
        v0, i0, p0 = rng.normal(1.0, 0.08, 3) * np.array([2.0, 80.0, 6.0])
        t_amb0 = rng.normal(22.0, 2.0)
        s, w = speed / 1500.0, 1.0 - health
        vib = (v0 * s**2 * (0.8 + 0.4 * load) + 5.0 * w**2 * s) * rng.lognormal(0, 0.06, n)
        current = i0 * (0.25 + 0.75 * load) * s * (1 + 0.15 * w) + rng.normal(0, 0.4, n)
        pressure = p0 * s**2 * (1 - 0.08 * w) + rng.normal(0, 0.05, n)
        hour = (np.arange(n) * STEP_H) % 24
        ambient = t_amb0 + 5.0 * np.sin(2 * np.pi * (hour - 9.0) / 24)
        rise = np.where(running, 25 * load * s + 10 * s**2 + 30 * w**2 * s, 0.0)  # k P_loss / h_c
        alpha = np.exp(-STEP_H / 1.5)  # exact step of the first-order response, tau = C / h_c
        drive = ambient + rise
        temp, _ = lfilter([1 - alpha], [1, -alpha], drive, zi=[alpha * drive[0]])
        temp = temp + rng.normal(0, 0.3, n)
        values = {"vibration_rms": vib, "motor_current": current, "pressure": pressure}
        values["bearing_temp"] = temp
        return {k: np.round(v / RESOLUTION[k]) * RESOLUTION[k] for k, v in values.items()}

    def _offline_gaps(
        self, rng: np.random.Generator, logged: np.ndarray, events: np.ndarray
    ) -> None:
        n = len(logged)
        for _ in range(rng.poisson(self.gaps_per_day * self.days)):
            a = int(rng.integers(0, n))
            b = a + round(rng.uniform(*self.gap_hours) / STEP_H)
            if not np.any((events >= a - 1) & (events <= b)):  # keep event rows and their context
                logged[a:b] = False

    def _reading_faults(
        self, rng: np.random.Generator, sensor: str, x: np.ndarray, every: int
    ) -> np.ndarray:
        """Stuck stretches, spikes, sentinels and dropouts on one sensor's readings."""
        if not self.faults or len(x) == 0:
            return x
        x = x.copy()
        per_hour = 1.0 / (every * STEP_H)
        for _ in range(rng.poisson(self.stuck_per_day * self.days)):
            a = int(rng.integers(0, len(x)))
            x[a : a + int(rng.uniform(*self.stuck_hours) * per_hour)] = x[a]
        spikes = rng.random(len(x)) < self.spike_rate
        x[spikes] = np.round(x[spikes] * rng.uniform(5, 20, spikes.sum()), 2)
        x[rng.random(len(x)) < self.sentinel_rate] = SENTINELS[sensor]
        x[rng.random(len(x)) < self.dropout_rate] = np.nan
        return x

    def _rows(
        self,
        rng: np.random.Generator,
        steps: np.ndarray,
        ns: np.ndarray,
        values: np.ndarray,
        is_fail: np.ndarray,
        maints: np.ndarray,
        regime: np.ndarray,
        load: np.ndarray,
        speed: np.ndarray,
        health: np.ndarray,
    ) -> dict[str, np.ndarray]:
        """Merge readings with equal timestamps into rows and mark the events."""
        order = np.argsort(ns, kind="stable")
        steps, ns, values = steps[order], ns[order], values[order]
        first = np.flatnonzero(np.r_[True, ns[1:] != ns[:-1]])
        steps, ns = np.minimum.reduceat(steps, first), ns[first]
        values = np.fmax.reduceat(values, first, axis=0)  # at most one reading per cell
        keep = ~np.isnan(values).all(axis=1) | is_fail[steps] | np.isin(steps, maints)
        steps, ns, values = steps[keep], ns[keep], values[keep]
        failure = is_fail[steps]
        maintenance = np.zeros(len(steps), dtype=bool)
        in_maint = np.flatnonzero(np.isin(steps, maints))
        _, earliest = np.unique(steps[in_maint], return_index=True)
        maintenance[in_maint[earliest]] = True
        repeat = np.ones(len(steps), dtype=int)
        if self.faults:
            dup = (rng.random(len(steps)) < self.duplicate_rate) & ~failure & ~maintenance
            repeat[dup] = 2
        rows = {
            "step": steps,
            "ns": ns,
            "regime": regime[steps],
            "load": np.round(load[steps], 3),
            "speed_rpm": np.round(speed[steps], 1),
            **{s: values[:, j] for j, s in enumerate(SENSORS)},
            "failure": failure,
            "maintenance": maintenance,
            "health": health[steps],
        }
        return {k: np.repeat(v, repeat, axis=0) for k, v in rows.items()}


def _check_regimes(regimes: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    for name, spec in dict(regimes).items():
        missing = [k for k in _REGIME_KEYS if k not in spec]
        if missing:
            raise ConfigError(
                f"regime {name!r} lacks {', '.join(missing)}; each regime needs "
                f"{', '.join(_REGIME_KEYS)} (e.g. {DEFAULT_REGIMES['nominal']})"
            )
        out[str(name)] = {k: float(spec[k]) for k in _REGIME_KEYS}
        if out[str(name)]["share"] <= 0 or out[str(name)]["mean_hours"] <= 0:
            raise ConfigError(f"regime {name!r} needs share > 0 and mean_hours > 0")
    if not out:
        raise ConfigError("regimes is empty; give at least one, e.g. {'nominal': ...}")
    return out


def _check_range(name: str, value: Sequence[float], upper: float | None = None) -> tuple:
    lo, hi = (float(v) for v in value)
    if lo > hi or lo < 0 or (upper is not None and hi > upper):
        limit = f" and at most {upper}" if upper is not None else ""
        raise ConfigError(f"{name}={list(value)} must be [min, max] with 0 <= min <= max{limit}")
    return lo, hi
