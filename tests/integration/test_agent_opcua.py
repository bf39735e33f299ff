"""plantml-agent reading an OPC UA server (asyncua's own server, in process, on a free port).

The server offers only Basic256Sha256 with SignAndEncrypt (certificates made by
the test); the agent subscribes to the nodes of two assets and predicts; a node
whose status turns Bad drops out of the rows; a client without security is refused.
"""

from __future__ import annotations

import asyncio
import socket
import sqlite3
import threading
import time
from pathlib import Path

import pytest

from plantml.agent.config import parse_config
from plantml.agent.service import Service
from tests.agent_support import free_port, wait_for
from tests.bundles import make_bundle, reference

pytestmark = pytest.mark.slow
ASSETS = {"press-1": ("a", "b"), "press-2": ("a", "b")}


async def make_cert(folder: Path, name: str, uri: str):
    from asyncua.crypto.cert_gen import setup_self_signed_certificate
    from cryptography.x509.oid import ExtendedKeyUsageOID

    key, cert = folder / f"{name}.pem", folder / f"{name}.der"
    usage = [ExtendedKeyUsageOID.CLIENT_AUTH, ExtendedKeyUsageOID.SERVER_AUTH]
    await setup_self_signed_certificate(key, cert, uri, socket.gethostname(), usage, {})
    return cert, key


class OPCUAServer:
    """An asyncua server on its own thread and event loop, with one variable per asset column."""

    def __init__(self, folder: Path):
        self.folder, self.port = folder, free_port()
        self.endpoint = f"opc.tcp://127.0.0.1:{self.port}/plantml/"
        self.loop = asyncio.new_event_loop()
        self.ready, self.stopping = threading.Event(), None
        self.variables: dict[tuple[str, str], object] = {}
        self.node_ids: dict[str, dict[str, str]] = {}
        self.thread = threading.Thread(
            target=self.loop.run_until_complete, args=(self._main(),), daemon=True
        )

    async def _main(self) -> None:
        from asyncua import Server, ua

        self.stopping = asyncio.Event()
        server = Server()
        await server.init()
        await server.set_application_uri("urn:plantml:test-server")
        server.set_endpoint(self.endpoint)
        server.set_security_policy([ua.SecurityPolicyType.Basic256Sha256_SignAndEncrypt])
        cert, key = await make_cert(self.folder, "server", "urn:plantml:test-server")
        await server.load_certificate(str(cert))
        await server.load_private_key(str(key))
        idx = await server.register_namespace("urn:plantml:test")
        for asset, columns in ASSETS.items():
            obj = await server.nodes.objects.add_object(idx, asset)
            for column in columns:
                node_id = ua.NodeId(f"{asset}.{column}", idx)
                self.variables[(asset, column)] = await obj.add_variable(node_id, column, 0.0)
                self.node_ids.setdefault(asset, {})[node_id.to_string()] = column
        async with server:
            self.ready.set()
            await self.stopping.wait()

    def start(self) -> OPCUAServer:
        self.thread.start()
        assert self.ready.wait(30), "the OPC UA server did not start"
        return self

    def write(self, asset: str, column: str, value: float, good: bool = True) -> None:
        from asyncua import ua

        status = ua.StatusCode(ua.StatusCodes.Good if good else ua.StatusCodes.BadSensorFailure)
        data = ua.DataValue(ua.Variant(float(value), ua.VariantType.Double), StatusCode=status)
        future = asyncio.run_coroutine_threadsafe(
            self.variables[(asset, column)].write_value(data), self.loop
        )
        future.result(10)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.stopping.set)
        self.thread.join(10)


def start_agent(
    folder: Path, server: OPCUAServer, security: dict | None
) -> tuple[Service, threading.Thread]:
    make_bundle(folder / "bundle", time_kind="datetime", max_gap=30.0, length=3)
    source = {
        "type": "opcua",
        "name": "presses",
        "endpoint": server.endpoint,
        "row_interval": 0.25,
        "sampling_interval": 0.05,
        "assets": server.node_ids,
        "reconnect": {"min_delay": 0.2, "max_delay": 1},
    }
    if security:
        source["security"] = security
        source["application_uri"] = "urn:plantml:agent"
    cfg = parse_config(
        {
            "site": "s1",
            "models": [{"bundle": "bundle"}],
            "inputs": [source],
            "metrics": {"enabled": False},
        },
        folder,
    )
    service = Service(cfg)
    thread = threading.Thread(target=service.run, daemon=True)
    thread.start()
    return service, thread


def latest(folder: Path, asset: str) -> list[float]:
    db = sqlite3.connect(folder / "state" / "agent.db")
    values = [
        v
        for (v,) in db.execute(
            "SELECT value FROM predictions WHERE asset = ? ORDER BY id", (asset,)
        )
    ]
    db.close()
    return values


def window_value(bundle: Path, a: float, b: float) -> float:
    rows = [{"unit": "x", "t": str(t), "a": str(a), "b": str(b)} for t in (1, 2, 3)]
    return reference(bundle, rows)[("x", "3")][1]


def test_opcua_subscription_to_predictions_with_sign_and_encrypt(tmp_path):
    server = OPCUAServer(tmp_path).start()
    cert, key = asyncio.run(make_cert(tmp_path, "agent", "urn:plantml:agent"))
    security = {
        "policy": "Basic256Sha256",
        "mode": "SignAndEncrypt",
        "certificate": str(cert),
        "private_key": str(key),
    }
    for asset in ASSETS:
        server.write(asset, "a", 4.0)
        server.write(asset, "b", 6.0 if asset == "press-1" else 3.0)
    service, thread = start_agent(tmp_path, server, security)
    try:
        wait_for(lambda: len(latest(tmp_path, "press-2")) >= 2, 30, "predictions from OPC UA rows")
        bundle = tmp_path / "bundle"
        assert latest(tmp_path, "press-1")[-1] == pytest.approx(
            window_value(bundle, 4.0, 6.0), rel=1e-5
        )
        assert latest(tmp_path, "press-2")[-1] == pytest.approx(
            window_value(bundle, 4.0, 3.0), rel=1e-5
        )
        server.write("press-1", "a", 9.0)
        want = window_value(bundle, 9.0, 6.0)
        wait_for(
            lambda: latest(tmp_path, "press-1")[-1] == pytest.approx(want, rel=1e-5),
            10,
            "the new value",
        )
        # a sensor failure (status Bad) leaves the value out: the rows are rejected, not filled
        server.write("press-2", "b", 0.0, good=False)
        before = len(latest(tmp_path, "press-2"))
        time.sleep(1.0)
        assert len(latest(tmp_path, "press-2")) <= before + 1
        text = service.telemetry.render().decode()
        assert 'reason="missing_column"' in text
        assert service.inputs[0].status()["connected"] is True
    finally:
        service.stop()
        thread.join(30)
        server.stop()


def test_opcua_without_security_is_refused_with_a_clear_error(tmp_path):
    server = OPCUAServer(tmp_path).start()
    service, thread = start_agent(tmp_path, server, security=None)
    try:
        error = wait_for(lambda: service.inputs[0].status()["error"], 30, "the connection error")
        assert server.endpoint in error and "set security.policy and mode" in error
        assert not service.inputs[0].status()["connected"]
        assert 'plantml_agent_connection_errors_total{client="presses",reason="security"}' in (
            service.telemetry.render().decode()
        )
        assert service.health()["live"]
    finally:
        service.stop()
        thread.join(30)
        server.stop()
