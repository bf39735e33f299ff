"""The registry against real services: PostgreSQL, two processes at once, the server over TLS."""

from __future__ import annotations

import os
import ssl
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from plantml.registry import Registry
from tests.postgres import free_port, postgres_server
from tests.registry_helpers import make_export, make_registry

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def pg_url():
    with postgres_server() as url:
        yield url


def _race(home: Path, url: str | None, tokens: dict, n: int) -> list[str]:
    start = home.parent / "start"
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.registry_worker",
                str(home),
                url or "-",
                tokens[dev],
                tokens[rev],
                str(n),
                name,
                str(start),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            cwd=REPO,
        )
        for name, dev, rev in (("a", "dev", "rev1"), ("b", "dev2", "rev2"))
    ]
    time.sleep(3)  # both have built their bundles and wait
    start.touch()
    refs = []
    for proc in procs:
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err[-3000:]
        refs += out.split()
    return refs


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_two_processes_register_and_approve_at_once(backend, tmp_path, request):
    url = request.getfixturevalue("pg_url") if backend == "postgresql" else None
    if url:  # a fresh database per test on the shared server
        import sqlalchemy as sa

        db = f"race_{os.getpid()}"
        with sa.create_engine(url, isolation_level="AUTOCOMMIT").connect() as conn:
            conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {db}")
            conn.exec_driver_sql(f"CREATE DATABASE {db}")
        url = url.rsplit("/", 1)[0] + f"/{db}"
    home = tmp_path / "home"
    registry, tokens = make_registry(home, url)
    n = 15
    refs = _race(home, url, tokens, n)
    versions = registry.versions("pump")
    assert sorted(v["number"] for v in versions) == list(range(1, 2 * n + 1))  # no gap, no clash
    assert sorted(refs) == sorted(v["ref"] for v in versions)
    assert all(len(v["reviews"]) == 1 for v in versions)
    report = registry.verify_audit()
    assert report.ok, report.message()
    actions = [e["action"] for e in registry.audit_entries(limit=10_000)]
    assert actions.count("register") == 2 * n and actions.count("approve") == 2 * n


def test_postgres_store_runs_the_same_rules(pg_url, tmp_path):
    from plantml.registry import Refused

    registry, tokens = make_registry(tmp_path / "home", pg_url.rsplit("/", 1)[0] + "/postgres")
    registry.register(tokens["dev"], make_export(tmp_path / "a"), "pump")
    with pytest.raises(Refused) as err:
        registry.review(tokens["dev"], "pump:1", "approve")
    assert err.value.code == "wrong_role"
    import sqlalchemy as sa

    with pytest.raises(sa.exc.DatabaseError, match="append-only"), registry.engine.begin() as conn:
        conn.exec_driver_sql("UPDATE versions SET author = 'mallory'")
    assert (
        Registry.open(tmp_path / "home", pg_url.rsplit("/", 1)[0] + "/postgres").verify_audit().ok
    )


def _certificate(folder: Path) -> tuple[Path, Path]:
    import datetime as dt

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    import ipaddress

    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False
        )
        .sign(key, hashes.SHA256())
    )
    (folder / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (folder / "key.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return folder / "cert.pem", folder / "key.pem"


def serve(home: Path, port: int, log: Path, *tls: str) -> subprocess.Popen:
    """``plantml-registry serve`` in the background; returns once it answers."""
    exe = Path(sys.executable).parent / "plantml-registry"
    proc = subprocess.Popen(
        [str(exe), "serve", "--home", str(home), "--port", str(port), *tls],
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
    )
    scheme = "https" if tls else "http"
    for _ in range(200):
        try:
            httpx.get(f"{scheme}://127.0.0.1:{port}/login", verify=False, timeout=1)
            return proc
        except httpx.TransportError:
            if proc.poll() is not None:
                raise AssertionError(log.read_text()) from None
            time.sleep(0.1)
    proc.terminate()
    raise AssertionError("registry server did not start:\n" + log.read_text())


def test_server_over_tls_binds_loopback_and_never_logs_tokens(tmp_path):
    registry, tokens = make_registry(tmp_path / "home")
    registry.register(tokens["dev"], make_export(tmp_path / "a"), "pump")
    cert, key = _certificate(tmp_path)
    port, log = free_port(), tmp_path / "server.log"
    proc = serve(tmp_path / "home", port, log, "--certfile", str(cert), "--keyfile", str(key))
    try:
        base = f"https://127.0.0.1:{port}"
        with httpx.Client(
            verify=ssl.create_default_context(cafile=str(cert)), base_url=base
        ) as client:
            r = client.get("/api/v1/models", headers={"Authorization": f"Bearer {tokens['edge']}"})
            assert r.json() == {"models": ["pump"]}
            r = client.post("/login", data={"token": tokens["rev1"]}, follow_redirects=False)
            assert r.status_code == 303 and "secure" in r.headers["set-cookie"].lower()
            assert "samesite=strict" in r.headers["set-cookie"].lower()
            client.get(
                "/api/v1/models?token=" + tokens["ops"]
            )  # a token put where it does not belong
        with pytest.raises(httpx.TransportError):
            httpx.get(f"http://127.0.0.1:{port}/login", timeout=2)  # TLS only
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    text = log.read_text()
    assert "GET /api/v1/models" in text and "pmr_<redacted>" in text
    assert not any(token in text for token in tokens.values())
    with open(log) as f:
        assert "127.0.0.1" in f.readline()  # bound to loopback by default
