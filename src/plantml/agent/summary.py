"""The periodic summary (edge-to-cloud sync hook) and its pluggable ``sketches`` slot.

Every ``summary.interval`` the agent publishes one message per model on
``plant/{site}/_agent/summary``: counts over the interval (rows, rejected rows
by reason, predictions by mode, raw window alarms, alarm events), latency
quantiles, outbox depth and drops, degraded assets, and ``sketches``.

``sketches`` is filled by a provider object per model, chosen with
``summary.sketches: "package.module:factory"`` (called with the model's
:class:`plantml.edge.Bundle`). A provider has two methods::

    update(row: Mapping[str, Any], prediction: Prediction | None) -> None
        # every accepted row (the column values the model read) and its prediction, if any
    snapshot() -> dict            # JSON-able; called once per interval, then starts afresh

The default, :class:`ConditionCounts`, counts rows, predictions and raw alarms
per operating condition and keeps the prediction's mean, min and max, so the
field is never empty. The drift sketches of ``plantml.monitoring`` plug in here.
"""

from __future__ import annotations

import importlib
import random
import threading
from collections import defaultdict
from collections.abc import Callable, Mapping
from typing import Any, Protocol

import numpy as np

from plantml.agent.errors import AgentConfigError
from plantml.edge import Bundle, Prediction

RESERVOIR = 20000


class SketchProvider(Protocol):
    def update(self, row: Mapping[str, Any], prediction: Prediction | None) -> None: ...

    def snapshot(self) -> dict[str, Any]: ...


class ConditionCounts:
    """Default sketches: per operating condition, rows predicted, raw alarms, value statistics."""

    def __init__(self, bundle: Bundle | None = None):
        self.output = bundle.output_name if bundle is not None else "value"
        self._reset()

    def _reset(self) -> None:
        self.rows_without_prediction = 0
        self.by_condition: dict[str, dict[str, Any]] = {}

    def update(self, row: Mapping[str, Any], prediction: Prediction | None) -> None:
        if prediction is None:
            self.rows_without_prediction += 1
            return
        c = self.by_condition.setdefault(
            prediction.condition,
            {"predictions": 0, "raw_alarms": 0, "sum": 0.0, "min": None, "max": None},
        )
        c["predictions"] += 1
        c["raw_alarms"] += int(bool(prediction.alarm))
        v = float(prediction.value)
        c["sum"] += v
        c["min"] = v if c["min"] is None else min(c["min"], v)
        c["max"] = v if c["max"] is None else max(c["max"], v)

    def snapshot(self) -> dict[str, Any]:
        out = {
            "kind": "condition_counts",
            "output": self.output,
            "rows_without_prediction": self.rows_without_prediction,
            "by_condition": {
                name: {
                    "predictions": c["predictions"],
                    "raw_alarms": c["raw_alarms"],
                    "mean": c["sum"] / c["predictions"],
                    "min": c["min"],
                    "max": c["max"],
                }
                for name, c in sorted(self.by_condition.items())
            },
        }
        self._reset()
        return out


def load_provider_factory(spec: str) -> Callable[[Bundle], SketchProvider]:
    """``"package.module:name"`` -> a callable that makes a provider for a bundle."""
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise AgentConfigError(
            f"summary.sketches: {spec!r} is not 'package.module:factory' "
            "(e.g. plantml.agent.summary:ConditionCounts)"
        )
    try:
        factory = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise AgentConfigError(f"summary.sketches: cannot load {spec!r} ({exc})") from None
    if not callable(factory):
        raise AgentConfigError(f"summary.sketches: {spec!r} is not callable")
    return factory


def quantiles(values: list[float]) -> dict[str, float | int | None]:
    """p50/p90/p99/max of a sample (None when empty) and its size."""
    if not values:
        return {"n": 0, "p50": None, "p90": None, "p99": None, "max": None}
    arr = np.asarray(values, dtype=np.float64)
    p50, p90, p99 = np.percentile(arr, [50, 90, 99])
    return {
        "n": len(values),
        "p50": float(p50),
        "p90": float(p90),
        "p99": float(p99),
        "max": float(arr.max()),
    }


class IntervalStats:
    """Counts and latency samples since the last summary (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[tuple[str, str], dict[str, int]] = defaultdict(lambda: defaultdict(int))
        self._samples: dict[tuple[str, str], list[float]] = defaultdict(list)
        self._seen: dict[tuple[str, str], int] = defaultdict(int)

    def add(self, name: str, model: str, n: int = 1, label: str | None = None) -> None:
        with self._lock:
            self._counts[(name, model)][label or ""] += n

    def sample(self, name: str, model: str, value: float) -> None:
        """Reservoir sampling: a uniform sample of at most RESERVOIR values per interval."""
        with self._lock:
            key = (name, model)
            self._seen[key] += 1
            bucket = self._samples[key]
            if len(bucket) < RESERVOIR:
                bucket.append(value)
            else:
                j = random.randrange(self._seen[key])
                if j < RESERVOIR:
                    bucket[j] = value

    def take(self) -> tuple[dict, dict]:
        """(counts, samples) since the last call; starts a new interval."""
        with self._lock:
            counts = {k: dict(v) for k, v in self._counts.items()}
            samples = dict(self._samples)
            self._counts.clear()
            self._samples.clear()
            self._seen.clear()
        return counts, samples


def summary_body(
    model: str,
    counts: dict,
    samples: dict,
    period: tuple[float, float],
    extra: dict[str, Any],
    sketches: dict[str, Any],
) -> dict[str, Any]:
    """The summary message of one model (see the module docstring)."""

    def count(name: str, key: str = "") -> dict[str, int]:
        return dict(sorted(counts.get((name, key), {}).items()))

    total = lambda name: sum(count(name, model).values())  # noqa: E731
    return {
        "period": {"start": period[0], "end": period[1], "seconds": period[1] - period[0]},
        "counts": {
            "rows": total("rows"),
            "rows_rejected": count("rejected", model),
            "rows_rejected_unrouted": count("rejected", ""),
            "predictions": count("predictions", model),
            "raw_window_alarms": total("raw_alarms"),
        },
        "alarms": {"events": count("alarm_events", model), **extra.pop("alarms", {})},
        "latency": {
            "inference_seconds": quantiles(samples.get(("inference_seconds", model), [])),
            "end_to_end_seconds": quantiles(samples.get(("end_to_end_seconds", ""), [])),
            "delivery_seconds": quantiles(samples.get(("delivery_seconds", ""), [])),
        },
        **extra,
        "sketches": sketches,
    }
