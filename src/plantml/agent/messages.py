"""The JSON messages the agent publishes, and their topics and ids.

Every message carries ``id`` (for deduplication), ``kind``, ``site``, ``agent``
and the model(s) it is about (``name``, ``version``, ``bundle_sha256``).
Prediction and alarm ids are derived from what they describe (model, bundle
hash, asset, window time, event), so a prediction recomputed after a crash has
the id it had before: a consumer that keeps the ids it has seen gets each one
exactly once. Field by field, the schema is in the README section "Edge agent".
"""

from __future__ import annotations

import hashlib
import json
import math
from typing import Any

from plantml.agent.alarms import AlarmEvent
from plantml.agent.store import OutMessage


def message_id(*parts: Any) -> str:
    """A stable 32-hex-digit id of what a message describes."""
    text = "\x1f".join(str(p) for p in parts)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


def encode(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False, default=_plain).encode()


def _plain(value: Any) -> Any:
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    return str(value)


def _finite(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)


class Messages:
    """Builds the agent's messages for one site and agent id."""

    def __init__(self, site: str, agent: str, topics: dict[str, str], retain: bool = True):
        self.site, self.agent, self.topics, self.retain = site, agent, topics, retain

    def topic(self, kind: str, asset: str = "", model: str = "") -> str:
        return self.topics[kind].format(site=self.site, asset=asset, model=model)

    def _base(self, kind: str, msg_id: str) -> dict[str, Any]:
        return {"id": msg_id, "kind": kind, "site": self.site, "agent": self.agent}

    def prediction(
        self,
        slot: str,
        info: dict[str, str],
        asset: str,
        time: Any,
        output: str,
        value: float | None,
        alarm: bool | None,
        alarm_state: str | None,
        condition: str | None,
        mode: str,
        reason: str | None,
        received: float | None,
        row_time: float | None,
    ) -> OutMessage:
        """One prediction (``value`` None for a rule or a stopped asset)."""
        msg_id = message_id("prediction", self.site, slot, info["bundle_sha256"], asset, time, mode)
        payload = {
            **self._base("prediction", msg_id),
            "asset": asset,
            "time": time,
            "model": {"slot": slot, **info},
            "output": output,
            "value": _finite(value),
            "alarm": alarm,
            "alarm_state": alarm_state,
            "condition": condition,
            "degraded": mode != "primary",
            "mode": mode,
            "reason": reason,
        }
        return OutMessage(
            self.topic("prediction", asset, slot),
            encode(payload),
            self.retain,
            "prediction",
            msg_id,
            received,
            row_time,
        )

    def alarm(
        self,
        slot: str,
        info: dict[str, str],
        asset: str,
        event: AlarmEvent,
        mode: str,
        reason: str | None,
        received: float | None,
        row_time: float | None,
    ) -> OutMessage:
        """An alarm event: ``raised`` or ``cleared``, with the evidence."""
        msg_id = message_id(
            "alarm", self.site, slot, info["bundle_sha256"], asset, event.time, event.kind
        )
        payload = {
            **self._base("alarm", msg_id),
            "asset": asset,
            "time": event.time,
            "event": event.kind,
            "active": event.kind == "raised",
            "model": {"slot": slot, **info},
            "evidence": event.evidence,
            "degraded": mode != "primary",
            "mode": mode,
            "reason": reason,
        }
        return OutMessage(
            self.topic("alarm", asset, slot),
            encode(payload),
            self.retain,
            "alarm",
            msg_id,
            received,
            row_time,
        )

    def rejected(
        self, seq: int, models: list[dict[str, str]], record: dict[str, Any]
    ) -> OutMessage:
        """A rejected row: source, asset, model, column, reason, message."""
        msg_id = message_id("rejected", self.site, self.agent, seq)
        payload = {**self._base("rejected", msg_id), "models": models, **record}
        return OutMessage(self.topic("rejected"), encode(payload), False, "rejected", msg_id)

    def summary(
        self, seq: int, slot: str, info: dict[str, str], body: dict[str, Any]
    ) -> OutMessage:
        msg_id = message_id("summary", self.site, self.agent, slot, seq)
        payload = {
            **self._base("summary", msg_id),
            "seq": seq,
            "model": {"slot": slot, **info},
            **body,
        }
        return OutMessage(
            self.topic("summary", model=slot), encode(payload), self.retain, "summary", msg_id
        )

    def dropped(
        self, seq: int, models: list[dict[str, str]], dropped: int, total: int
    ) -> OutMessage:
        """The outbox hit its bound: how many of the oldest messages were dropped."""
        msg_id = message_id("outbox_dropped", self.site, self.agent, seq)
        payload = {
            **self._base("outbox_dropped", msg_id),
            "models": models,
            "dropped": dropped,
            "dropped_total": total,
        }
        return OutMessage(self.topic("summary"), encode(payload), False, "outbox_dropped", msg_id)
