"""Alarms with false-alarm control: a pure state machine per asset and model.

A raw alarm per window (``prediction >= threshold``) flickers: one noisy window
is one alarm. :class:`AlarmTracker` raises only when the evidence holds:

- **k-of-n**: at least ``k`` of the last ``n`` predictions are on the alarm side
  of the *raise* threshold;
- **minimum duration**: k-of-n has held for ``min_duration`` (time units of the
  rows: seconds for timestamps) before the alarm is raised;
- **hysteresis**: once active, it clears only when ``k`` of the last ``n``
  predictions are on the safe side of the *clear* threshold (lower than the raise
  threshold for ``direction: above``, higher for ``below``);
- **cooldown**: after clearing, nothing is raised for ``cooldown``.

Phases: ``clear`` → (k-of-n) → ``pending`` → (``min_duration``) → ``active`` →
(k-of-n clear) → ``cooldown`` → ``clear``. Each :meth:`AlarmTracker.update`
returns an :class:`AlarmEvent` (``raised`` or ``cleared``, with the values that
triggered it) or None. The state is plain data (:meth:`state_dict`) so the
agent can persist it and resume after a restart.

With ``k = n = 1``, ``min_duration = cooldown = 0`` and ``clear = raise`` the
tracker raises at the first window over the threshold and clears at the first
one under it: the raw alarm's rising and falling edges.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class AlarmRule:
    """Thresholds and confirmation settings (see the module docstring)."""

    raise_at: float
    clear_at: float
    direction: str = "above"
    k: int = 1
    n: int = 1
    min_duration: float = 0.0
    cooldown: float = 0.0

    def __post_init__(self) -> None:
        if self.direction not in ("above", "below"):
            raise ValueError(f"direction must be above or below, got {self.direction!r}")
        if not 1 <= self.k <= self.n:
            raise ValueError(f"need 1 <= k <= n, got k={self.k}, n={self.n}")
        if self.min_duration < 0 or self.cooldown < 0:
            raise ValueError("min_duration and cooldown must be >= 0")
        wrong = (
            self.clear_at > self.raise_at
            if self.direction == "above"
            else self.clear_at < self.raise_at
        )
        if wrong:
            raise ValueError(
                f"clear threshold {self.clear_at} is on the alarm side of the raise threshold "
                f"{self.raise_at} (direction {self.direction})"
            )

    def hit(self, value: float) -> bool:
        """The value is on the alarm side of the raise threshold (the raw per-window alarm)."""
        return value >= self.raise_at if self.direction == "above" else value <= self.raise_at

    def safe(self, value: float) -> bool:
        """The value is on the safe side of the clear threshold."""
        return value < self.clear_at if self.direction == "above" else value > self.clear_at


@dataclass
class AlarmEvent:
    """``raised`` or ``cleared`` at ``time`` (the time as given), with the evidence."""

    kind: str
    time: Any
    t: float
    evidence: dict[str, Any]


class AlarmTracker:
    """The state of one (asset, model) pair; feed it predictions in time order."""

    def __init__(self, rule: AlarmRule):
        self.rule = rule
        self.phase = "clear"
        self.recent: deque[tuple[float, Any, float | None, bool, bool]] = deque(maxlen=rule.n)
        self.pending_since: float | None = None
        self.active_since: float | None = None
        self.active_since_given: Any = None
        self.cleared_at: float | None = None
        self.peak: float | None = None

    @property
    def active(self) -> bool:
        return self.phase == "active"

    def _count(self, index: int) -> int:
        return sum(1 for item in self.recent if item[index])

    def _evidence(self) -> dict[str, Any]:
        return {
            "values": [v for _, _, v, _, _ in self.recent],
            "times": [g for _, g, _, _, _ in self.recent],
            "k": self.rule.k,
            "n": self.rule.n,
        }

    def update(
        self,
        t: float,
        value: float | None,
        given: Any = None,
        hit: bool | None = None,
        safe: bool | None = None,
    ) -> AlarmEvent | None:
        """Add one prediction at numeric time ``t`` (``given``: the time as sent).

        ``hit``/``safe`` override the thresholds (a degraded-mode rule decides
        them); ``value`` may then be None.
        """
        rule = self.rule
        hit = rule.hit(value) if hit is None else bool(hit)
        safe = rule.safe(value) if safe is None else bool(safe)
        self.recent.append((t, t if given is None else given, value, hit, safe))
        if self.phase == "cooldown" and t - (self.cleared_at or t) >= rule.cooldown:
            self.phase = "clear"
        if self.phase == "active":
            if value is not None:
                self.peak = value if self.peak is None else self._worse(self.peak, value)
            if self._count(4) >= rule.k:
                return self._clear(t, given)
            return None
        if self.phase == "cooldown":
            return None
        if self._count(3) < rule.k:
            self.phase, self.pending_since = "clear", None
            return None
        if self.phase == "clear":
            self.phase, self.pending_since = "pending", t
        if t - self.pending_since >= rule.min_duration:
            return self._raise(t, given)
        return None

    def _worse(self, a: float, b: float) -> float:
        return max(a, b) if self.rule.direction == "above" else min(a, b)

    def _raise(self, t: float, given: Any) -> AlarmEvent:
        evidence = {
            **self._evidence(),
            "hits": self._count(3),
            "raise_threshold": self.rule.raise_at,
            "direction": self.rule.direction,
            "confirmed_for": t - self.pending_since,
        }
        self.phase, self.active_since = "active", t
        self.active_since_given = t if given is None else given
        values = [v for _, _, v, h, _ in self.recent if h and v is not None]
        self.peak = (max if self.rule.direction == "above" else min)(values) if values else None
        self.recent.clear()  # clearing counts only predictions made while active
        return AlarmEvent("raised", t if given is None else given, t, evidence)

    def _clear(self, t: float, given: Any) -> AlarmEvent:
        evidence = {
            **self._evidence(),
            "safe": self._count(4),
            "clear_threshold": self.rule.clear_at,
            "direction": self.rule.direction,
            "active_since": self.active_since_given,
            "active_for": t - (self.active_since if self.active_since is not None else t),
            "peak": self.peak,
        }
        self.phase = "cooldown" if self.rule.cooldown > 0 else "clear"
        self.cleared_at, self.active_since, self.pending_since = t, None, None
        self.recent.clear()  # a new alarm needs fresh evidence
        return AlarmEvent("cleared", t if given is None else given, t, evidence)

    def state_dict(self) -> dict[str, Any]:
        """Plain JSON-able state, for persisting across restarts."""
        return {
            "phase": self.phase,
            "recent": [list(item) for item in self.recent],
            "pending_since": self.pending_since,
            "active_since": self.active_since,
            "active_since_given": self.active_since_given,
            "cleared_at": self.cleared_at,
            "peak": self.peak,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.phase = state["phase"]
        self.recent = deque((tuple(item) for item in state["recent"]), maxlen=self.rule.n)
        self.pending_since = state["pending_since"]
        self.active_since = state["active_since"]
        self.active_since_given = state.get("active_since_given")
        self.cleared_at = state["cleared_at"]
        self.peak = state["peak"]


def run_alarms(rule: AlarmRule, times: list[float], values: list[float]) -> list[AlarmEvent]:
    """Events of one asset's prediction series (times ascending): for benchmarks and tests."""
    tracker = AlarmTracker(rule)
    events = []
    for t, v in zip(times, values, strict=True):
        event = tracker.update(t, v)
        if event is not None:
            events.append(event)
    return events
