"""MQTT connections (paho-mqtt 2.x, MQTT 5): TLS, credentials, reconnect with backoff, clear errors.

:class:`Connection` runs one connection on its own thread: it makes a fresh
paho client per attempt (so nothing paho queued on a dead connection is sent
twice behind the agent's back), connects, and on failure says why in words
(``tls``: the broker's certificate does not verify; ``auth``: the broker
refused the credentials; ``network``: unreachable), counts it, and retries with
exponential backoff (``mqtt.reconnect``). The agent keeps working meanwhile:
outputs wait in the outbox.
"""

from __future__ import annotations

import logging
import random
import ssl
import threading
import time
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from plantml.agent.config import MQTTConfig
from plantml.agent.errors import AgentConfigError
from plantml.agent.metrics import Telemetry

log = logging.getLogger("plantml.agent")
AUTH_REASONS = (
    "Bad user name or password",
    "Not authorized",
    "Banned",
    "Bad authentication method",
)


def tls_context(cfg: MQTTConfig) -> ssl.SSLContext | None:
    """The TLS context of ``mqtt.tls`` (CA file, optional client certificate), or None."""
    tls = cfg.tls
    if tls is None:
        return None
    try:
        ctx = ssl.create_default_context(cafile=str(tls.ca_file) if tls.ca_file else None)
        if tls.cert_file is not None:
            ctx.load_cert_chain(str(tls.cert_file), str(tls.key_file))
    except (ssl.SSLError, OSError) as exc:
        raise AgentConfigError(
            f"mqtt.tls: cannot load the CA file or client certificate/key ({exc}); check "
            "ca_file, cert_file and key_file (PEM)"
        ) from None
    ctx.check_hostname = tls.verify_hostname
    return ctx


class Connection:
    """One MQTT connection kept alive on a thread; subclasses act while connected."""

    clean_start = True
    manual_ack = False

    def __init__(self, cfg: MQTTConfig, client_id: str, label: str, telemetry: Telemetry):
        self.cfg, self.client_id, self.label, self.telemetry = cfg, client_id, label, telemetry
        self.tls = tls_context(cfg)
        self.stopping = threading.Event()
        self.connected = threading.Event()
        self.generation = 0
        self.client: paho.Client | None = None
        self.error: str | None = None
        self.error_reason: str | None = None
        self.connects = 0
        self._connack = threading.Event()
        self._connack_reason: Any = None
        self._lost = threading.Event()
        self._last_logged: tuple[str, float] | None = None
        self._thread = threading.Thread(target=self._run, name=f"mqtt-{label}", daemon=True)

    # -- to override ----------------------------------------------------------------------------------
    def on_connected(self, client: paho.Client) -> None:
        """Runs on this connection's thread while connected; return when disconnected or stopping."""
        while not self.stopping.is_set() and not self._lost.is_set():
            self._lost.wait(0.5)

    def properties(self) -> Properties | None:
        return None

    # -- machinery -------------------------------------------------------------------------------------
    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self.stopping.set()
        self._lost.set()
        self._thread.join(timeout)

    def status(self) -> dict[str, Any]:
        return {
            "connected": self.connected.is_set(),
            "error": self.error,
            "reason": self.error_reason,
            "connects": self.connects,
        }

    def _make_client(self) -> paho.Client:
        client = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id=self.client_id,
            protocol=paho.MQTTv5,
            manual_ack=self.manual_ack,
        )
        if self.tls is not None:
            client.tls_set_context(self.tls)
        if self.cfg.username is not None:
            client.username_pw_set(self.cfg.username, self.cfg.password.read())
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        return client

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        self._connack_reason = reason_code
        self._connack.set()

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        self._lost.set()

    def _fail(self, reason: str, message: str) -> None:
        self.error, self.error_reason = message, reason
        self.telemetry.connection(self.label, False, reason)
        now = time.monotonic()
        if (
            self._last_logged is None
            or self._last_logged[0] != message
            or now - self._last_logged[1] > 60
        ):
            log.error("mqtt %s: %s", self.label, message)
            self._last_logged = (message, now)

    def _where(self) -> str:
        return f"broker {self.cfg.host}:{self.cfg.port}"

    def _connect_once(self) -> paho.Client | None:
        """One attempt; the connected client, or None (the reason recorded)."""
        try:
            client = self._make_client()
        except AgentConfigError as exc:
            self._fail("config", str(exc))
            return None
        self._connack.clear()
        self._lost.clear()
        try:
            client.connect(
                self.cfg.host,
                self.cfg.port,
                self.cfg.keepalive,
                clean_start=self.clean_start,
                properties=self.properties(),
            )
        except ssl.SSLCertVerificationError as exc:
            ca = self.cfg.tls.ca_file if self.cfg.tls else None
            self._fail(
                "tls",
                f"{self._where()} presented a TLS certificate that does not verify "
                f"({exc.verify_message}) against mqtt.tls.ca_file ({ca}); give the CA that signed "
                "the broker's certificate, or fix the broker's certificate or host name",
            )
            return None
        except ssl.SSLError as exc:
            self._fail("tls", f"TLS handshake with {self._where()} failed ({exc}); check mqtt.tls")
            return None
        except OSError as exc:
            self._fail(
                "network",
                f"{self._where()} unreachable ({exc}); retrying (outputs wait in the outbox)",
            )
            return None
        client.loop_start()
        deadline = time.monotonic() + max(self.cfg.keepalive, 10)
        while not (self._connack.is_set() or self._lost.is_set()) and time.monotonic() < deadline:
            self._connack.wait(0.05)
        if not self._connack.is_set():
            client.loop_stop()
            self._fail("network", f"{self._where()} did not answer the connection request")
            return None
        reason = self._connack_reason
        if reason is not None and reason.is_failure:
            client.loop_stop()
            text = str(reason)
            if text in AUTH_REASONS:
                secret = self.cfg.password
                where = secret.file or (
                    f"${secret.env}" if secret.env else "(no password configured)"
                )
                self._fail(
                    "auth",
                    f"{self._where()} refused the credentials ({text}); check mqtt.username "
                    f"({self.cfg.username}) and the password in {where}",
                )
            else:
                self._fail("refused", f"{self._where()} refused the connection ({text})")
            return None
        return client

    def _run(self) -> None:
        attempt = 0
        while not self.stopping.is_set():
            client = self._connect_once()
            if client is not None:
                attempt = 0
                self.client, self.generation = client, self.generation + 1
                self.connects += 1
                self.error = self.error_reason = None
                self.connected.set()
                self.telemetry.connection(self.label, True)
                log.info("mqtt %s: connected to %s", self.label, self._where())
                try:
                    self.on_connected(client)
                finally:
                    self.connected.clear()
                    self.telemetry.connection(self.label, False)
                    if self.stopping.is_set():
                        client.disconnect()
                    client.loop_stop()
                    if not self.stopping.is_set() and not self.error:
                        self._fail("network", f"connection to {self._where()} lost; reconnecting")
                    self.client = None
                continue
            delay = min(self.cfg.reconnect_max, self.cfg.reconnect_min * 2**attempt)
            attempt = min(attempt + 1, 30)
            self.stopping.wait(delay * random.uniform(0.8, 1.2))


def session_properties(expiry: int) -> Properties:
    """CONNECT properties for a persistent session kept ``expiry`` seconds by the broker."""
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = int(expiry)
    return props


def published_ok(info: paho.MQTTMessageInfo) -> bool:
    return info.rc == MQTTErrorCode.MQTT_ERR_SUCCESS
