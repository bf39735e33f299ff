"""MQTT connections for plantml-ingest (subscribe) and the alert sink (publish), paho-mqtt 2.

The settings match the agent's ``mqtt`` section: host, port (8883 with TLS),
client id, username, a password read from a file or an environment variable
(never given on the command line), and TLS with a CA file, an optional client
certificate and key, and hostname verification.
"""

from __future__ import annotations

import argparse
import os
import queue
import ssl
import threading
from dataclasses import dataclass
from pathlib import Path

from plantml.monitoring.errors import MonitoringError


@dataclass(frozen=True)
class MQTTSettings:
    host: str = "127.0.0.1"
    port: int | None = None
    client_id: str = ""
    username: str | None = None
    password_file: str | None = None
    password_env: str | None = None
    tls: bool = False
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    verify_hostname: bool = True
    keepalive: int = 30

    @property
    def port_number(self) -> int:
        return self.port or (8883 if self.use_tls else 1883)

    @property
    def use_tls(self) -> bool:
        return self.tls or bool(self.ca_file or self.cert_file)

    def password(self) -> str | None:
        if self.password_file:
            try:
                return Path(self.password_file).read_text(encoding="utf-8").rstrip("\r\n")
            except OSError as exc:
                raise MonitoringError(
                    f"cannot read the MQTT password file {self.password_file} ({exc.strerror})"
                ) from None
        if self.password_env:
            value = os.environ.get(self.password_env)
            if value is None:
                raise MonitoringError(
                    f"the environment variable {self.password_env} (MQTT password) is not set"
                )
            return value
        return None


def add_arguments(parser: argparse.ArgumentParser, prefix: str = "") -> None:
    """The MQTT connection options (``--{prefix}host`` ...), as the agent's config names them."""
    g = parser.add_argument_group("MQTT broker" + (f" ({prefix.rstrip('-')})" if prefix else ""))
    g.add_argument(f"--{prefix}host", default="127.0.0.1", help="broker host (default 127.0.0.1)")
    g.add_argument(f"--{prefix}port", type=int, default=None, help="port (1883, 8883 with TLS)")
    g.add_argument(f"--{prefix}client-id", default="", help="MQTT client id")
    g.add_argument(f"--{prefix}username", default=None)
    g.add_argument(f"--{prefix}password-file", default=None, help="file holding the password")
    g.add_argument(f"--{prefix}password-env", default=None, help="variable holding the password")
    g.add_argument(f"--{prefix}tls", action="store_true", help="connect with TLS")
    g.add_argument(f"--{prefix}ca-file", default=None, help="CA certificate (PEM); implies TLS")
    g.add_argument(f"--{prefix}cert-file", default=None, help="client certificate (PEM)")
    g.add_argument(f"--{prefix}key-file", default=None, help="client key (PEM)")
    g.add_argument(
        f"--{prefix}no-verify-hostname",
        action="store_true",
        help="do not check the broker's certificate name (test brokers only)",
    )


def settings_from_args(args: argparse.Namespace, prefix: str = "") -> MQTTSettings:
    p = prefix.replace("-", "_")
    get = lambda name: getattr(args, p + name)  # noqa: E731
    if bool(get("cert_file")) != bool(get("key_file")):
        raise MonitoringError("give both --cert-file and --key-file, or neither")
    return MQTTSettings(
        host=get("host"),
        port=get("port"),
        client_id=get("client_id"),
        username=get("username"),
        password_file=get("password_file"),
        password_env=get("password_env"),
        tls=get("tls"),
        ca_file=get("ca_file"),
        cert_file=get("cert_file"),
        key_file=get("key_file"),
        verify_hostname=not get("no_verify_hostname"),
    )


def connect(settings: MQTTSettings, timeout: float = 10.0):
    """A connected paho client with its network loop running; raises on failure."""
    import paho.mqtt.client as mqtt

    client = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2,
        client_id=settings.client_id,
        protocol=mqtt.MQTTv311,
    )
    if settings.username:
        client.username_pw_set(settings.username, settings.password())
    if settings.use_tls:
        client.tls_set(
            ca_certs=settings.ca_file,
            certfile=settings.cert_file,
            keyfile=settings.key_file,
            cert_reqs=ssl.CERT_REQUIRED,
        )
        client.tls_insecure_set(not settings.verify_hostname)
    connected = threading.Event()
    result: dict[str, object] = {}

    def on_connect(client, userdata, flags, reason_code, properties):
        result["rc"] = reason_code
        connected.set()

    client.on_connect = on_connect
    where = f"{settings.host}:{settings.port_number}"
    try:
        client.connect(settings.host, settings.port_number, settings.keepalive)
    except (OSError, ssl.SSLError) as exc:
        raise MonitoringError(f"cannot reach the MQTT broker at {where} ({exc})") from None
    client.loop_start()
    if not connected.wait(timeout):
        client.loop_stop()
        raise MonitoringError(f"no answer from the MQTT broker at {where} within {timeout:g} s")
    rc = result["rc"]
    if getattr(rc, "is_failure", False):
        client.loop_stop()
        raise MonitoringError(
            f"the MQTT broker at {where} refused the connection ({rc}); check the username, "
            "password and TLS settings"
        )
    return client


class Subscription:
    """Messages of some topics, queued by paho's thread and read by the caller."""

    def __init__(self, settings: MQTTSettings, topics: list[str], qos: int = 1):
        self.queue: queue.Queue = queue.Queue()
        self.topics = topics
        self.qos = qos
        self.client = connect(settings)
        self.client.on_message = lambda c, u, msg: self.queue.put((msg.topic, msg.payload))
        subscribed = threading.Event()
        self.client.on_subscribe = lambda *a: subscribed.set()
        self.client.on_connect = lambda client, *a: client.subscribe([(t, qos) for t in topics])
        self.client.subscribe([(t, qos) for t in topics])
        if not subscribed.wait(10):
            raise MonitoringError(f"the broker did not confirm the subscription to {topics}")

    def get(self, timeout: float) -> tuple[str, bytes] | None:
        try:
            return self.queue.get(timeout=timeout)
        except queue.Empty:
            return None

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
