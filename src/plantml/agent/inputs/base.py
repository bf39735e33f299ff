"""What every input hands the agent: :class:`Record` s, and the telemetry payload format.

A record is one row of one asset: its time, its values (column -> value), where
it came from, and how to acknowledge it once its outputs are durable (an MQTT
PUBACK, a file position). A payload that cannot be read becomes a record with
a ``problem``: the agent counts, logs and reports it like any bad row, so
nothing vanishes silently.

Telemetry payloads (MQTT, JSON lines) are JSON::

    {"ts": "2024-05-01T12:00:00Z", "values": {"pressure": 3.2, "regime": "nominal"}}
    {"asset": "pump-7", "ts": 1714564800, "values": {...}}        # asset in the payload
    {"rows": [{"ts": ..., "values": {...}}, ...]}                 # a batch (or a JSON list)

``ts`` (or ``time``) is an ISO-8601 timestamp, epoch seconds, or the plain number
the bundle's time column holds (cycles). The asset comes from the topic
(``{asset}`` in the input's topic pattern) or the payload's ``asset``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

MAX_ROWS_PER_MESSAGE = 10000


@dataclass(frozen=True)
class Problem:
    """Why a record cannot be used: a reason label (metrics), the column, and a message."""

    reason: str
    message: str
    column: str | None = None


@dataclass
class Record:
    """One row of one asset, as an input received it."""

    asset: str | None
    time: Any
    values: dict[str, Any]
    source: str
    received: float
    problem: Problem | None = None
    ack: Callable[[], None] | None = field(default=None, repr=False)
    position: tuple[str, int] | None = None
    redelivered: bool = False  # MQTT DUP: the broker sent it again after a lost acknowledgement


class Input(Protocol):
    """An input runs on its own thread (or event loop) and hands records to ``sink``."""

    name: str
    finite: bool

    def start(self, sink: Callable[[Record], None]) -> None: ...

    def stop(self) -> None: ...

    def status(self) -> dict[str, Any]: ...


def _bad(source: str, received: float, reason: str, message: str, asset=None, column=None):
    return Record(asset, None, {}, source, received, Problem(reason, message, column))


def _time_value(value: Any) -> tuple[Any, str | None]:
    """The row time, or an error message when its type cannot be a time."""
    if isinstance(value, bool) or value is None:
        return None, "missing time: each row needs 'ts' (ISO-8601 text or epoch seconds)"
    if isinstance(value, int | float):
        if not math.isfinite(value):
            return None, f"time {value!r} is not finite"
        return value, None
    if isinstance(value, str) and value.strip():
        return value.strip(), None
    return None, f"time {value!r} is not ISO-8601 text or a number (epoch seconds)"


def row_record(
    row: Any, asset: str | None, source: str, received: float, topic_asset: str | None = None
) -> Record:
    """One ``{"ts", "values"[, "asset"]}`` object as a record (or a record with a problem)."""
    if not isinstance(row, Mapping):
        return _bad(
            source,
            received,
            "bad_payload",
            f"a row must be a JSON object, got {type(row).__name__}",
        )
    payload_asset = row.get("asset", asset)
    if payload_asset is not None and not isinstance(payload_asset, str | int):
        return _bad(source, received, "bad_payload", f"asset {payload_asset!r} must be text")
    if topic_asset is not None and payload_asset is not None and str(payload_asset) != topic_asset:
        return _bad(
            source,
            received,
            "bad_payload",
            f"the payload's asset {payload_asset!r} differs from the topic's {topic_asset!r}; "
            "drop one of them",
            asset=topic_asset,
        )
    name = topic_asset if topic_asset is not None else payload_asset
    if name is None or not str(name).strip():
        return _bad(
            source,
            received,
            "no_asset",
            "no asset: publish to a topic with the asset in it (plant/{site}/{asset}/telemetry) "
            "or put 'asset' in the payload",
        )
    name = str(name).strip()
    values = row.get("values")
    if not isinstance(values, Mapping):
        return _bad(
            source,
            received,
            "bad_payload",
            "each row needs 'values': {column: number, ...}",
            asset=name,
        )
    ts, problem = _time_value(row.get("ts", row.get("time")))
    if problem:
        return _bad(source, received, "bad_time", problem, asset=name, column="ts")
    return Record(name, ts, {str(k): v for k, v in values.items()}, source, received)


def parse_payload(
    payload: bytes, source: str, received: float, topic_asset: str | None = None
) -> list[Record]:
    """A telemetry message as records: one per row, or one carrying the problem."""
    try:
        data = json.loads(payload)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        preview = payload[:60].decode("utf-8", "replace")
        return [
            _bad(
                source,
                received,
                "not_json",
                f"payload is not JSON ({exc}); starts with {preview!r}",
                asset=topic_asset,
            )
        ]
    asset = None
    if isinstance(data, Mapping) and "rows" in data:
        asset, data = data.get("asset"), data["rows"]
        if not isinstance(data, list):
            return [_bad(source, received, "bad_payload", "'rows' must be a list of rows")]
    if isinstance(data, list):
        if not data:
            return [_bad(source, received, "bad_payload", "the message holds no rows")]
        if len(data) > MAX_ROWS_PER_MESSAGE:
            return [
                _bad(
                    source,
                    received,
                    "bad_payload",
                    f"{len(data)} rows in one message; send at most {MAX_ROWS_PER_MESSAGE}",
                    asset=topic_asset,
                )
            ]
        return [row_record(r, asset, source, received, topic_asset) for r in data]
    return [row_record(data, asset, source, received, topic_asset)]
