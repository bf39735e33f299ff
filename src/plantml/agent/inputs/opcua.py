"""OPC UA input (asyncua): subscribe to configured nodes, emit one row per asset every interval.

Config (one input per server)::

    - type: opcua
      endpoint: opc.tcp://plc.local:4840/
      row_interval: 1s            # a row per asset this often (the bundle's sampling period)
      sampling_interval: 0.5s     # server-side sampling of each node
      assets:
        pump-1: {"ns=2;s=Pump1.Pressure": pressure, "ns=2;s=Pump1.Temp": bearing_temp}
      security: {policy: Basic256Sha256, mode: SignAndEncrypt,
                 certificate: client.der, private_key: client.pem, server_certificate: server.der}
      username: agent             # password_file / password_env

A data-change subscription keeps the latest value of each node and whether
its status is Good; every ``row_interval`` each asset gets a row stamped with
the agent's clock (UTC; ``time_format: epoch`` for seconds) holding its nodes'
latest Good values. A node whose status is not Good is left out of the row, so
its sensor goes stale and the model's degradation policy applies. A lost
connection is retried with exponential backoff; the error says why (network,
security, credentials).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from plantml.agent.config import OPCUAInputConfig
from plantml.agent.inputs.base import Record
from plantml.agent.metrics import Telemetry

log = logging.getLogger("plantml.agent")


class _Handler:
    """asyncua subscription handler: remembers each node's latest value and status."""

    def __init__(self, owner: OPCUAInput):
        self.owner = owner

    def datachange_notification(self, node, val, data) -> None:
        target = self.owner.nodes.get(node.nodeid)
        if target is None:
            return
        status = data.monitored_item.Value.StatusCode
        good = status is None or status.is_good()
        self.owner.latest.setdefault(target[0], {})[target[1]] = (val, good)

    def status_change_notification(self, status) -> None:
        log.warning("opcua %s: subscription status changed: %s", self.owner.name, status)


def _reason(exc: BaseException) -> str:
    name = type(exc).__name__
    if "UserAccessDenied" in name or "IdentityToken" in name:
        return "auth"
    if any(
        w in name for w in ("Certificate", "Security", "Signature")
    ) or "matching endpoint" in str(exc):
        return "security"
    return "network"


class OPCUAInput:
    """Runs an asyncio loop on its own thread."""

    finite = False

    def __init__(self, cfg: OPCUAInputConfig, telemetry: Telemetry):
        self.cfg, self.name, self.telemetry = cfg, cfg.name, telemetry
        self.latest: dict[str, dict[str, tuple[Any, bool]]] = {}
        self.nodes: dict[Any, tuple[str, str]] = {}
        self.connected = False
        self.error: str | None = None
        self.rows = 0
        self._stop = threading.Event()
        self._paused = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, sink: Callable[[Record], None]) -> None:
        self._thread = threading.Thread(
            target=lambda: asyncio.run(self._main(sink)), name=f"opcua-{self.name}", daemon=True
        )
        self._thread.start()

    def pause(self) -> None:
        self._paused.set()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def status(self) -> dict[str, Any]:
        return {
            "type": "opcua",
            "endpoint": self.cfg.endpoint,
            "connected": self.connected,
            "rows": self.rows,
            "error": self.error,
        }

    async def _client(self):
        from asyncua import Client
        from asyncua.crypto import security_policies
        from asyncua.ua import MessageSecurityMode

        cfg = self.cfg
        client = Client(cfg.endpoint, timeout=max(4.0, cfg.row_interval * 2))
        if cfg.application_uri:
            client.application_uri = cfg.application_uri
        if cfg.security is not None:
            sec = cfg.security
            await client.set_security(
                getattr(security_policies, f"SecurityPolicy{sec.policy}"),
                str(sec.certificate),
                str(sec.private_key),
                server_certificate=None
                if sec.server_certificate is None
                else str(sec.server_certificate),
                mode=getattr(MessageSecurityMode, sec.mode),
            )
        if cfg.username is not None:
            client.set_user(cfg.username)
            password = cfg.password.read()
            if password is not None:
                client.set_password(password)
        return client

    async def _session(self, sink: Callable[[Record], None]) -> None:
        cfg = self.cfg
        client = await self._client()
        await client.connect()
        try:
            self.nodes = {}
            nodes = []
            for asset, mapping in cfg.assets.items():
                for node_id, column in mapping.items():
                    node = client.get_node(node_id)
                    self.nodes[node.nodeid] = (asset, column)
                    nodes.append(node)
            subscription = await client.create_subscription(
                cfg.sampling_interval * 1000, _Handler(self)
            )
            await subscription.subscribe_data_change(
                nodes, sampling_interval=cfg.sampling_interval * 1000
            )
            self.connected, self.error = True, None
            self.telemetry.connection(self.name, True)
            log.info("opcua %s: subscribed to %d nodes on %s", self.name, len(nodes), cfg.endpoint)
            next_tick = time.monotonic() + cfg.row_interval
            while not self._stop.is_set():
                await asyncio.sleep(max(0.0, min(next_tick - time.monotonic(), 0.1)))
                if time.monotonic() < next_tick:
                    continue
                next_tick += cfg.row_interval
                if not self._paused.is_set():
                    self._emit(sink)
                await client.nodes.server_state.read_value()  # raises when the server is gone
        finally:
            self.connected = False
            self.telemetry.connection(self.name, False)
            with contextlib.suppress(Exception):  # the connection may already be gone
                await asyncio.wait_for(client.disconnect(), 3)

    def _emit(self, sink: Callable[[Record], None]) -> None:
        now = time.time()
        ts: Any = (
            now if self.cfg.time_format == "epoch" else datetime.fromtimestamp(now, UTC).isoformat()
        )
        for asset in self.cfg.assets:
            latest = self.latest.get(asset)
            if not latest:
                continue
            values = {column: val for column, (val, good) in latest.items() if good}
            self.rows += 1
            sink(Record(asset, ts, values, f"opcua:{self.cfg.endpoint}", now))

    async def _main(self, sink: Callable[[Record], None]) -> None:
        attempt = 0
        while not self._stop.is_set():
            try:
                await self._session(sink)
                attempt = 0
            except Exception as exc:
                reason = _reason(exc)
                message = f"OPC UA server {self.cfg.endpoint}: {type(exc).__name__}: {exc}"
                if reason == "security":
                    message += (
                        " (the server does not accept this security setting: set security.policy "
                        "and mode to one it offers, and check the certificates)"
                    )
                elif reason == "auth":
                    message += " (check username and the password file/env)"
                if message != self.error:
                    log.error("opcua %s: %s; retrying", self.name, message)
                self.error = message
                self.telemetry.connection(self.name, False, reason)
            if self._stop.is_set():
                break
            delay = min(self.cfg.reconnect_max, self.cfg.reconnect_min * 2**attempt)
            attempt = min(attempt + 1, 30)
            deadline = time.monotonic() + delay * random.uniform(0.8, 1.2)
            while time.monotonic() < deadline and not self._stop.is_set():
                await asyncio.sleep(0.1)
