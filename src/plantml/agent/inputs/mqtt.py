"""MQTT telemetry input: a persistent session, QoS 1, acknowledged only once outputs are durable.

The input subscribes to its topic pattern (``plant/{site}/{asset}/telemetry``:
``{site}`` is the configured site, ``{asset}`` becomes ``+`` and names the
asset of each message). Its session is persistent (clean start off, session
expiry ``mqtt.session_expiry``): while the agent is down or reconnecting the
broker keeps the telemetry for it. Messages are acknowledged by hand (PUBACK)
after the batch holding their rows was committed, so a crash loses nothing:
the broker delivers the unacknowledged messages again.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from functools import partial
from typing import Any

import paho.mqtt.client as paho

from plantml.agent.config import MQTTConfig, MQTTInputConfig
from plantml.agent.errors import AgentConfigError
from plantml.agent.inputs.base import Record, parse_payload
from plantml.agent.metrics import Telemetry
from plantml.agent.mqtt import Connection, session_properties


def topic_filter(template: str, site: str) -> tuple[str, int | None]:
    """(subscription filter, level of the asset or None) of a topic template."""
    levels = template.replace("{site}", site).split("/")
    index = None
    for i, level in enumerate(levels):
        if level == "{asset}":
            index, levels[i] = i, "+"
        elif "{" in level or "}" in level:
            raise AgentConfigError(
                f"inputs: topic {template!r}: only {{site}} and {{asset}} may appear, each as a "
                "whole topic level"
            )
    return "/".join(levels), index


class MQTTInput(Connection):
    """Subscribes to telemetry and hands each row to the agent."""

    finite = False
    clean_start = False
    manual_ack = True

    def __init__(self, icfg: MQTTInputConfig, cfg: MQTTConfig, site: str, telemetry: Telemetry):
        super().__init__(cfg, f"{cfg.client_id}-{icfg.name}", icfg.name, telemetry)
        self.name, self.qos = icfg.name, icfg.qos
        self.filter, self.asset_level = topic_filter(icfg.topic, site)
        self.sink: Callable[[Record], None] | None = None
        self.messages = 0
        self.paused = threading.Event()

    def properties(self):
        return session_properties(self.cfg.session_expiry)

    def start(self, sink: Callable[[Record], None]) -> None:  # type: ignore[override]
        self.sink = sink
        super().start()

    def _make_client(self) -> paho.Client:
        client = super()._make_client()
        # before connecting: a persistent session delivers queued messages right after CONNACK
        client.on_message = self._on_message
        return client

    def on_connected(self, client: paho.Client) -> None:
        client.subscribe(self.filter, qos=self.qos)
        super().on_connected(client)

    def _ack(self, generation: int, mid: int, qos: int) -> None:
        client = self.client
        # a message received on an older connection is delivered again on this one: skip its ack
        if client is not None and generation == self.generation:
            client.ack(mid, qos)

    def pause(self) -> None:
        """Take no more messages (those not yet acknowledged come back with the next session)."""
        self.paused.set()

    def _on_message(self, client, userdata, message: paho.MQTTMessage) -> None:
        if self.paused.is_set():
            return
        received = time.time()
        self.messages += 1
        asset = None
        if self.asset_level is not None:
            levels = message.topic.split("/")
            asset = levels[self.asset_level] if len(levels) > self.asset_level else None
        records = parse_payload(message.payload, f"mqtt:{message.topic}", received, asset)
        for record in records:
            record.redelivered = bool(message.dup)
        if message.qos > 0:
            records[-1].ack = partial(self._ack, self.generation, message.mid, message.qos)
        for record in records:
            self.sink(record)

    def status(self) -> dict[str, Any]:
        return {"type": "mqtt", "topic": self.filter, "messages": self.messages, **super().status()}
