"""A throwaway PostgreSQL server for tests: ``initdb`` + ``pg_ctl`` on a free loopback port.

PostgreSQL refuses to run as root, so the data folder is owned by the ``postgres`` user and
the server runs as that user (``runuser``). The test is skipped, with the reason, where the
server binaries or that user are missing.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager

import pytest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _bin() -> str | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return (
        os.path.dirname(found[-1])
        if found
        else shutil.which("initdb") and os.path.dirname(shutil.which("initdb"))
    )


@contextmanager
def postgres_server() -> Iterator[str]:
    """Start a server; yields its SQLAlchemy URL; stops it and removes its folder after."""
    bindir = _bin()
    if bindir is None:
        pytest.skip("PostgreSQL server binaries not found (apt-get install -y postgresql)")
    try:
        user = pwd.getpwnam("postgres")
    except KeyError:
        pytest.skip("no 'postgres' system user to run the PostgreSQL server as")
    as_pg = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    root = tempfile.mkdtemp(prefix="plantml-pg-")
    os.chown(root, user.pw_uid, user.pw_gid)
    data, port = os.path.join(root, "data"), free_port()
    run = {"check": True, "capture_output": True, "text": True, "timeout": 120}
    try:
        subprocess.run(
            [*as_pg, f"{bindir}/initdb", "-D", data, "-A", "trust", "-U", "postgres"], **run
        )
        subprocess.run(
            [
                *as_pg,
                f"{bindir}/pg_ctl",
                "-D",
                data,
                "-l",
                os.path.join(root, "log"),
                "-o",
                f"-k {root} -h 127.0.0.1 -p {port}",
                "-w",
                "start",
            ],
            **run,
        )
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(
            [*as_pg, f"{bindir}/pg_ctl", "-D", data, "-m", "fast", "-w", "stop"],
            capture_output=True,
            timeout=120,
        )
        shutil.rmtree(root, ignore_errors=True)
