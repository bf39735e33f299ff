"""Real servers for the slow tests: PostgreSQL (initdb + pg_ctl), Mosquitto, an HTTP receiver.

Each binds to 127.0.0.1 on a free port, runs in a temporary folder and is
stopped (and the folder removed) by its fixture. PostgreSQL refuses to run as
root, so as root the cluster belongs to the ``postgres`` user (``runuser``).
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, timeout: float = 20.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            return
        time.sleep(0.1)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout} s")


def _pg_bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    return Path(found[-1]).parent if found else None


@contextlib.contextmanager
def postgres() -> Iterator[str]:
    """A throwaway PostgreSQL cluster; yields its SQLAlchemy URL (database ``postgres``)."""
    bindir = _pg_bin()
    if bindir is None:
        pytest.skip("PostgreSQL server binaries not found (apt-get install -y postgresql)")
    folder = Path(tempfile.mkdtemp(prefix="plantml-pg-"))
    prefix: list[str] = []
    if os.geteuid() == 0:
        user = pwd.getpwnam("postgres")
        os.chown(folder, user.pw_uid, user.pw_gid)
        prefix = ["runuser", "-u", "postgres", "--"]
    data, port = folder / "data", free_port()
    try:
        subprocess.run(
            [*prefix, str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", "plantml"],
            check=True,
            capture_output=True,
        )
        subprocess.run(
            [
                *prefix,
                str(bindir / "pg_ctl"),
                "-D",
                str(data),
                "-l",
                str(folder / "log"),
                "-w",
                "-o",
                f"-k {folder} -h 127.0.0.1 -p {port}",
                "start",
            ],
            check=True,
            capture_output=True,
        )
        yield f"postgresql://plantml@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(
            [*prefix, str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
            capture_output=True,
        )
        shutil.rmtree(folder, ignore_errors=True)


@contextlib.contextmanager
def mosquitto(password: str | None = None) -> Iterator[int]:
    """A Mosquitto broker on a free loopback port (with a user ``plantml`` when ``password``)."""
    binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    if not Path(binary).exists():
        pytest.skip("mosquitto not found (apt-get install -y mosquitto)")
    folder = Path(tempfile.mkdtemp(prefix="plantml-mqtt-"))
    port = free_port()
    conf = [f"listener {port} 127.0.0.1", "persistence false"]
    if password is None:
        conf.append("allow_anonymous true")
    else:
        subprocess.run(
            ["mosquitto_passwd", "-b", "-c", str(folder / "passwd"), "plantml", password],
            check=True,
            capture_output=True,
        )
        conf += ["allow_anonymous false", f"password_file {folder / 'passwd'}"]
    (folder / "mosquitto.conf").write_text("\n".join(conf) + "\n")
    if os.geteuid() == 0:  # mosquitto drops privileges to its own user; let it read the folder
        os.chmod(folder, 0o755)
        for f in folder.iterdir():
            os.chmod(f, 0o644)
    proc = subprocess.Popen(
        [binary, "-c", str(folder / "mosquitto.conf")],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_for_port(port)
        yield port
    finally:
        proc.terminate()
        proc.wait(10)
        shutil.rmtree(folder, ignore_errors=True)


@contextlib.contextmanager
def http_receiver() -> Iterator[tuple[str, list]]:
    """An HTTP server taking JSON POSTs; yields (url, list of received bodies)."""
    received: list = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            length = int(self.headers.get("Content-Length", 0))
            received.append(
                {
                    "content_type": self.headers.get("Content-Type"),
                    "body": json.loads(self.rfile.read(length)),
                }
            )
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", free_port()), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/alerts", received
    finally:
        server.shutdown()
        server.server_close()
