"""What the agent remembers per asset: recent rows, sensor clocks, and per-model state.

- **Values**: a value is *valid* when it is a finite number inside the limits
  (``limits.max_abs``, ``limits.bounds``), or non-empty text for a condition
  column. Invalid values are removed from the row (the model then rejects the
  row for that column, or a fallback that does not read it serves it).
- **Sensor clocks**: the time of each column's last valid value. A sensor is
  *stale* once ``t - last_valid > stale_after`` (row time, not wall time).
- **Hold**: a missing value may be filled with the column's last valid value
  when that is at most ``hold`` old (never beyond the bundle's ``max_gap``).
- **Recent rows**: the last rows (cleaned, with their hold candidates), kept so
  a fallback can be started with a full window and so a restarted agent can
  rebuild every window by replaying them.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from plantml.agent.alarms import AlarmTracker


def to_seconds(ts: Any) -> float | None:
    """Row time as a number: epoch seconds for ISO-8601 text, the number itself otherwise."""
    if isinstance(ts, bool) or ts is None:
        return None
    if isinstance(ts, int | float):
        return float(ts) if math.isfinite(ts) else None
    if isinstance(ts, str):
        return _text_seconds(ts)
    return None


@lru_cache(maxsize=16384)  # a fleet's rows share their timestamps
def _text_seconds(ts: str) -> float | None:
    text = ts.strip()
    try:
        number = float(text)
        return number if math.isfinite(number) else None
    except ValueError:
        pass
    try:
        stamp = datetime.fromisoformat(text)
    except ValueError:
        return None
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=UTC)  # naive timestamps are UTC, as in training
    return stamp.timestamp()


def is_timestamp(ts: Any) -> bool:
    """ISO-8601 text (not a plain number)."""
    return isinstance(ts, str) and to_seconds(ts) is not None and not _is_number_text(ts)


def _is_number_text(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def model_time(ts: Any, time_kind: str) -> Any:
    """The row time as a bundle reads it: epoch seconds become ISO-8601 for timestamp bundles."""
    number = isinstance(ts, int | float) and not isinstance(ts, bool)
    if time_kind == "datetime" and number and math.isfinite(ts):
        return datetime.fromtimestamp(ts, UTC).isoformat()
    return ts


class Validator:
    """Checks values against the limits; text is valid only in condition columns."""

    def __init__(
        self, max_abs: float, bounds: dict[str, tuple[float, float]], categorical: set[str]
    ):
        self.max_abs, self.bounds, self.categorical = max_abs, bounds, categorical

    def problem(self, column: str, value: Any) -> tuple[str, str] | None:
        """None for a valid value, else (reason, message): ``missing`` (the runtime reports it,
        a held value may fill it), ``bad_value`` or ``out_of_range``."""
        kind = type(value)
        plain = (kind is float or kind is int) and column not in self.bounds
        if plain and column not in self.categorical and -self.max_abs <= value <= self.max_abs:
            return None  # the common case, fast (NaN fails the comparison: handled below)
        if value is None or (isinstance(value, str) and not value.strip()):
            return "missing", ""
        if column in self.categorical:
            if isinstance(value, str | int) and not isinstance(value, bool):
                return None
            return "bad_value", f"operating condition {value!r} is not text or a whole number"
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            return "bad_value", f"not a number: {value!r} (send a number or drop the row)"
        try:
            number = float(value)
        except ValueError:
            return "bad_value", f"not a number: {value!r} (fix the value or drop the row)"
        except OverflowError:
            number = math.inf
        if math.isnan(number):
            return (
                "bad_value",
                "value is NaN; the model needs a finite number (fix the value or drop the row)",
            )
        if abs(number) > self.max_abs:
            return "out_of_range", (
                f"value {str(value)[:40]} is beyond limits.max_abs ({self.max_abs:g}); a sensor "
                "fault or a unit error? fix the source or raise limits.max_abs"
            )
        low_high = self.bounds.get(column)
        if low_high and not low_high[0] <= number <= low_high[1]:
            return "out_of_range", (
                f"value {value!r} is outside limits.bounds.{column} {list(low_high)}; fix the "
                "sensor or the bounds"
            )
        return None


@dataclass
class SlotState:
    """One model's state for one asset: mode, alarm tracker, last accepted row time."""

    mode: str = "primary"  # primary | fallback | rule | stopped
    without: tuple[str, ...] = ()  # the fallback in use (its dropped sensors)
    reason: str | None = None
    recovering: bool = False
    tracker: AlarmTracker | None = None
    last_time: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "without": list(self.without),
            "reason": self.reason,
            "recovering": self.recovering,
            "tracker": None if self.tracker is None else self.tracker.state_dict(),
            "last_time": self.last_time,
        }


@dataclass
class AssetState:
    """Everything remembered about one asset (persisted as JSON, rows separately)."""

    history: int
    seq: int = 0
    first_time: float | None = None
    last_time: float | None = None
    last_valid: dict[str, float] = field(default_factory=dict)
    last_value: dict[str, Any] = field(default_factory=dict)
    slots: dict[str, SlotState] = field(default_factory=dict)
    recent: deque = field(init=False)

    def __post_init__(self) -> None:
        self.recent = deque(maxlen=self.history)

    def observe(self, t: float | None, values: dict[str, Any]) -> None:
        """Advance the sensor clocks with a row's valid values (rows in time order only)."""
        if t is None or (self.last_time is not None and t <= self.last_time):
            return
        if self.first_time is None:
            self.first_time = t
        self.last_time = t
        for column, value in values.items():
            self.last_valid[column] = t
            self.last_value[column] = value

    def hold_candidates(self, t: float | None, missing: list[str]) -> dict[str, list]:
        """For missing columns: [last valid value, its age] (the slot decides what to hold)."""
        if t is None:
            return {}
        out = {}
        for column in missing:
            if column in self.last_valid:
                out[column] = [self.last_value[column], t - self.last_valid[column]]
        return out

    def stale(self, sensors: list[str], t: float | None, stale_after: float | None) -> set[str]:
        """Sensors with no valid value for more than ``stale_after`` before ``t``."""
        if stale_after is None or t is None or self.first_time is None:
            return set()
        out = set()
        for column in sensors:
            since = self.last_valid.get(column, self.first_time)
            if t - since > stale_after:
                out.add(column)
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "first_time": self.first_time,
            "last_time": self.last_time,
            "last_valid": self.last_valid,
            "last_value": self.last_value,
            "slots": {name: s.to_dict() for name, s in self.slots.items()},
        }
