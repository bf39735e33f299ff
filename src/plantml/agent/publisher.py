"""Drains the outbox to the broker: oldest first, QoS 1, deleted only when acknowledged.

The publisher owns its own SQLite connection (``synchronous=normal``: a delete
lost in a power cut only means that message is sent again) and MQTT connection
(a clean session: the outbox, not the broker, is the durable queue). While connected it
keeps up to ``mqtt.inflight`` messages in flight; each PUBACK deletes its
message from the outbox. After a lost connection it starts again from the
oldest message still in the outbox, so a message whose PUBACK was lost is sent
again (consumers deduplicate by ``id``) and order is kept per asset.
"""

from __future__ import annotations

import logging
import queue
import threading
import time

import paho.mqtt.client as paho

from plantml.agent.config import MQTTConfig
from plantml.agent.metrics import Telemetry
from plantml.agent.mqtt import Connection, published_ok
from plantml.agent.store import Queued, Store

log = logging.getLogger("plantml.agent")
TICK = 0.05  # s between settling acknowledgements (one DELETE per tick, not per message)


class Publisher(Connection):
    """Outbox -> broker, on its own thread."""

    def __init__(self, cfg: MQTTConfig, store: Store, telemetry: Telemetry):
        super().__init__(cfg, f"{cfg.client_id}-out", "publisher", telemetry)
        self.store = store
        self.wake = threading.Event()
        self._acks: queue.SimpleQueue = queue.SimpleQueue()
        self.refused = 0

    def notify(self) -> None:
        """New messages were committed to the outbox."""
        self.wake.set()

    def _on_publish(self, client, userdata, mid, reason_code, properties) -> None:
        self._acks.put((mid, reason_code))
        if self._acks.qsize() >= self.cfg.inflight // 2:  # else settled in the next tick
            self.wake.set()

    def _settle(self, inflight: dict[int, Queued]) -> None:
        """Delete acknowledged messages from the outbox (one transaction)."""
        done: list[int] = []
        now = time.time()
        while True:
            try:
                mid, reason = self._acks.get_nowait()
            except queue.Empty:
                break
            message = inflight.pop(mid, None)
            if message is None:
                continue
            done.append(message.id)
            if reason is not None and getattr(reason, "is_failure", False):
                self.refused += 1
                log.error(
                    "mqtt publisher: the broker refused a %s message on %s (%s); dropped it "
                    "(check the broker's ACL for this client)",
                    message.kind,
                    message.topic,
                    reason,
                )
                continue
            self.telemetry.acked(message.kind, now, message.received, message.row_time)
        if done:
            with self.store.transaction():
                self.store.delete_messages(done)
        depth, size = self.store.outbox_depth()
        self.telemetry.outbox_messages.set(depth)
        self.telemetry.outbox_bytes.set(size)

    def on_connected(self, client: paho.Client) -> None:
        inflight: dict[int, Queued] = {}
        last_id = 0  # resend everything still in the outbox after a (re)connect
        while not self._lost.is_set() and not self.stopping.is_set():
            self.wake.clear()
            self._settle(inflight)
            room = self.cfg.inflight - len(inflight)
            if room > 0:
                for message in self.store.pending(last_id, room):
                    info = client.publish(
                        message.topic, message.payload, qos=1, retain=message.retain
                    )
                    if not published_ok(info):
                        self._lost.set()
                        break
                    inflight[info.mid] = message
                    last_id = message.id
            self.wake.wait(TICK if inflight else 1.0)  # idle: new messages wake it (notify)
        self._settle(inflight)

    def _make_client(self) -> paho.Client:
        client = super()._make_client()
        client.max_inflight_messages_set(self.cfg.inflight)
        client.on_publish = self._on_publish
        return client

    def flush(self, timeout: float) -> bool:
        """Wait until the outbox is empty (while connected); True when it is.

        Without a connection it waits at most 2 s for one: the outbox keeps the
        messages for the next start anyway.
        """
        deadline = time.monotonic() + timeout
        offline_deadline = time.monotonic() + min(timeout, 2.0)
        while time.monotonic() < deadline:
            if self.store.outbox_depth()[0] == 0:
                return True
            if not self.connected.is_set() and time.monotonic() > offline_deadline:
                break
            self.wake.set()
            time.sleep(0.05)
        return self.store.outbox_depth()[0] == 0
