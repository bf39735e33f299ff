"""Real services for the agent tests: Mosquitto on a free loopback port, a consumer, the agent.

Nothing here is mocked: :class:`Broker` runs the ``mosquitto`` binary with a
config file written by the test (optionally TLS with certificates generated
here, and a password file made by ``mosquitto_passwd``); :class:`Consumer` is a
paho client with a persistent session; :class:`AgentProcess` runs the installed
``plantml-agent`` entry point as a subprocess.
"""

from __future__ import annotations

import datetime as dt
import getpass
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

BIN = Path(sys.executable).parent
MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
MOSQUITTO_PASSWD = shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd"


def need_mosquitto() -> None:
    if not Path(MOSQUITTO).is_file():
        pytest.skip("mosquitto is not installed (apt-get install -y mosquitto; .ci/run does it)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate, timeout: float, what: str, every: float = 0.05):
    """Poll ``predicate`` until it returns something truthy; fail with ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


# --- certificates ------------------------------------------------------------------------------------


@dataclass
class TLSFiles:
    ca: Path
    cert: Path
    key: Path


def make_ca(folder: Path, name: str) -> tuple[Path, Any, Any]:
    """A self-signed CA: (cert path, cert, key)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    path = folder / f"{name}.crt"
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path, cert, key


def make_server_cert(folder: Path, ca_cert, ca_key, name: str = "broker") -> TLSFiles:
    """A certificate for 127.0.0.1/localhost signed by the CA."""
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    cert_path, key_path = folder / f"{name}.crt", folder / f"{name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    os.chmod(key_path, 0o644)
    return TLSFiles(folder / "ca.crt", cert_path, key_path)


# --- Mosquitto -----------------------------------------------------------------------------------------


class Broker:
    """One ``mosquitto`` process on 127.0.0.1 with persistence in ``folder``."""

    def __init__(
        self,
        folder: Path,
        tls: TLSFiles | None = None,
        users: dict[str, str] | None = None,
        port: int | None = None,
    ):
        need_mosquitto()
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.process: subprocess.Popen | None = None
        lines = [
            f"user {getpass.getuser()}",
            f"listener {self.port} 127.0.0.1",
            "persistence true",
            f"persistence_location {folder}/",
            "autosave_interval 1",
            "max_queued_messages 1000000",
            "max_inflight_messages 0",
            f"log_dest file {folder}/mosquitto.log",
            "log_type error",
            "log_type warning",
            "log_type notice",
        ]
        if users:
            pw = folder / "passwords"
            pw.touch()
            for user, password in users.items():
                subprocess.run([MOSQUITTO_PASSWD, "-b", str(pw), user, password], check=True)
            os.chmod(pw, 0o600)
            lines += ["allow_anonymous false", f"password_file {pw}"]
        else:
            lines.append("allow_anonymous true")
        if tls is not None:
            lines += [f"cafile {tls.ca}", f"certfile {tls.cert}", f"keyfile {tls.key}"]
        self.conf = folder / "mosquitto.conf"
        self.conf.write_text("\n".join(lines) + "\n")

    def start(self) -> Broker:
        self.process = subprocess.Popen(
            [MOSQUITTO, "-c", str(self.conf)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )

        def listening() -> bool:
            if self.process.poll() is not None:
                raise AssertionError(
                    f"mosquitto exited: {self.process.stderr.read().decode()}\n{self.log()}"
                )
            with socket.socket() as s:
                return s.connect_ex(("127.0.0.1", self.port)) == 0

        wait_for(listening, 10, f"mosquitto on port {self.port}")
        return self

    def stop(self, kill: bool = False) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
            self.process.wait(10)
        self.process = None

    def log(self) -> str:
        path = self.folder / "mosquitto.log"
        return path.read_text() if path.is_file() else ""


# --- MQTT clients ---------------------------------------------------------------------------------------


def mqtt_client(client_id: str, tls: TLSFiles | None = None, user=None, password=None, clean=True):
    import paho.mqtt.client as paho
    from paho.mqtt.enums import CallbackAPIVersion

    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=paho.MQTTv5)
    client.max_queued_messages_set(0)
    client.max_inflight_messages_set(1000)
    if tls is not None:
        client.tls_set(ca_certs=str(tls.ca))
    if user:
        client.username_pw_set(user, password)
    client.reconnect_delay_set(0.2, 1)
    return client


def connect(client, port: int, clean: bool = True) -> None:
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = 3600
    client.connect("127.0.0.1", port, 30, clean_start=clean, properties=props)
    client.loop_start()


class Consumer:
    """Subscribes to ``topic`` with QoS 1 and a persistent session; keeps every message."""

    def __init__(self, port: int, topic: str, client_id: str = "test-consumer", **auth):
        self.messages: list[tuple[str, dict, bool]] = []
        self.lock = threading.Lock()
        self.connected = threading.Event()
        self.client = mqtt_client(client_id, **auth)
        self.topic = topic

        def on_connect(client, userdata, flags, reason_code, properties):
            client.subscribe(topic, qos=1)
            self.connected.set()

        def on_message(client, userdata, message):
            try:
                payload = json.loads(message.payload)
            except ValueError:
                payload = {"raw": message.payload}
            if not isinstance(payload, dict):
                payload = {"raw": payload}
            with self.lock:
                self.messages.append((message.topic, payload, message.retain))

        self.client.on_connect = on_connect
        self.client.on_message = on_message
        connect(self.client, port, clean=False)
        wait_for(self.connected.is_set, 10, "the consumer's subscription")

    def of_kind(self, kind: str) -> list[dict]:
        with self.lock:
            return [m for _, m, _ in self.messages if m.get("kind") == kind]

    def unique(self, kind: str) -> list[dict]:
        """Messages of one kind, deduplicated by id (first arrival kept, in arrival order)."""
        seen, out = set(), []
        for m in self.of_kind(kind):
            if m["id"] not in seen:
                seen.add(m["id"])
                out.append(m)
        return out

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


class InOrder:
    """Publishes QoS 1 messages in order across reconnects, as a device with a buffer does.

    paho resends the messages it held when the connection dropped; new messages wait
    until those are acknowledged, so they cannot overtake them.
    """

    def __init__(self, client):
        self.client, self.was_down = client, False

    def publish(self, topic: str, payload):
        client = self.client
        if not client.is_connected():
            self.was_down = True
            while not client.is_connected():
                time.sleep(0.01)
        if self.was_down:
            while client._out_messages:  # paho's own queue: resent first, in order
                time.sleep(0.01)
            self.was_down = False
        return client.publish(topic, payload, qos=1)


def publish_rows(
    client, site: str, rows: list[dict], asset_key="unit", time_key="t", rate: float = 0
):
    """Publish rows as telemetry (one message per row, QoS 1, in order even across an outage)."""
    sender = InOrder(client)
    period = 1.0 / rate if rate else 0.0
    for row in rows:
        values = {k: v for k, v in row.items() if k not in (asset_key, time_key)}
        payload = json.dumps({"ts": row[time_key], "values": values})
        sender.publish(f"plant/{site}/{row[asset_key]}/telemetry", payload)
        if period:
            time.sleep(period)


# --- the agent ---------------------------------------------------------------------------------------------


def write_config(folder: Path, config: dict) -> Path:
    import yaml

    path = folder / "agent.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


class AgentProcess:
    """``plantml-agent run`` as a subprocess (stdout and stderr in ``agent.log``)."""

    def __init__(self, config: Path, *extra: str, env: dict | None = None):
        self.config = config
        self.log_path = config.parent / "agent.log"
        self.log_file = open(self.log_path, "ab")  # noqa: SIM115 (closed in stop)
        self.process = subprocess.Popen(
            [str(BIN / "plantml-agent"), "run", "--config", str(config), *extra],
            stdout=self.log_file,
            stderr=subprocess.STDOUT,
            env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})},
        )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def health(self, port: int) -> dict | None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as r:
                return json.loads(r.read())
        except Exception:
            return None

    def metrics(self, port: int) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as r:
            return r.read().decode()

    def wait_ready(self, port: int, timeout: float = 60) -> dict:
        def ready():
            if self.process.poll() is not None:
                raise AssertionError(f"the agent exited ({self.process.returncode}):\n{self.log()}")
            h = self.health(port)
            return h if h and h.get("ready") else None

        return wait_for(ready, timeout, "the agent to be ready", every=0.2)

    def stop(self, sig=signal.SIGTERM, timeout: float = 60) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
                raise AssertionError(f"the agent did not stop on {sig}:\n{self.log()}") from None
        self.log_file.close()
        return self.process.returncode


def metric_value(text: str, name: str, **labels: str) -> float:
    """Sum of the samples of ``name`` whose labels match ``labels`` (0 when none)."""
    from prometheus_client.parser import text_string_to_metric_families

    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                total += sample.value
    return total


# --- rows and reference predictions --------------------------------------------------------------------

START = dt.datetime(2024, 5, 1, tzinfo=dt.UTC)


def iso(step: int, period: float = 60.0) -> str:
    return (START + dt.timedelta(seconds=step * period)).isoformat().replace("+00:00", "Z")


def timestamped(rows: list[dict], period: float = 60.0) -> list[dict]:
    """Rows whose numeric ``t`` (1, 2, ...) becomes an ISO-8601 timestamp ``period`` s apart."""
    return [{**r, "t": iso(int(r["t"]), period)} for r in rows]


def write_rows_csv(path: Path, rows: list[dict]) -> Path:
    import csv

    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def edge_predict(bundle: Path, rows_csv: Path) -> dict[tuple[str, str], tuple[float, int | None]]:
    """``plantml-edge predict`` on a CSV: {(asset, time): (value, alarm)}."""
    import csv

    out = rows_csv.with_suffix(".pred.csv")
    subprocess.run(
        [
            str(BIN / "plantml-edge"),
            "predict",
            "--bundle",
            str(bundle),
            "--input",
            str(rows_csv),
            "--output",
            str(out),
        ],
        check=True,
        capture_output=True,
    )
    with open(out, newline="") as f:
        reader = csv.DictReader(f)
        name = next(
            c for c in reader.fieldnames if c not in ("asset", "time", "condition", "alarm")
        )
        return {
            (r["asset"], r["time"]): (float(r[name]), int(r["alarm"]) if "alarm" in r else None)
            for r in reader
        }
