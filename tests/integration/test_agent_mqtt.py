"""plantml-agent end to end through a real Mosquitto broker (started by the tests).

Rows published -> predictions and alarms equal ``plantml-edge predict`` and the
alarm state machine; bad payloads counted and reported; the broker stopped
mid-stream -> every prediction exactly once after deduplication, in order per
asset; the agent killed with SIGKILL -> outbox intact and delivered after a
restart; SIGTERM and restart -> windows resume; TLS with a wrong password or an
untrusted certificate refused with a clear error while the agent buffers.
"""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from plantml.agent.alarms import AlarmRule, run_alarms
from tests.agent_support import (
    BIN,
    AgentProcess,
    Broker,
    Consumer,
    connect,
    edge_predict,
    free_port,
    make_ca,
    make_server_cert,
    metric_value,
    mqtt_client,
    publish_rows,
    timestamped,
    wait_for,
    write_config,
    write_rows_csv,
)
from tests.bundles import fleet_rows, make_bundle

pytestmark = pytest.mark.slow
SITE = "s1"
OUTAGE_S = 4.0  # the 30 s outage is a parameter of scripts/bench_agent.py


@pytest.fixture
def broker(tmp_path):
    broker = Broker(tmp_path / "broker").start()
    yield broker
    broker.stop()


def bundle_at(folder: Path) -> Path:
    # timestamped rows 60 s apart; a step over 90 s restarts a window
    return make_bundle(
        folder / "bundle", time_kind="datetime", max_gap=90.0, threshold=0.0, seed=11
    )


def agent_config(folder: Path, port: int, metrics: int, alarm: dict | None = None, **extra) -> Path:
    config = {
        "site": SITE,
        "agent_id": "edge-test",
        "models": [{"bundle": "bundle", "alarm": alarm or {}}],
        "inputs": [{"type": "mqtt", "topic": "plant/{site}/{asset}/telemetry"}],
        "mqtt": {
            "host": "127.0.0.1",
            "port": port,
            "reconnect": {"min_delay": 0.2, "max_delay": 1},
        },
        "metrics": {"port": metrics},
        "summary": {"interval": 2},
        **extra,
    }
    return write_config(folder, config)


def expected_events(edge: dict, rule: AlarmRule) -> list[tuple[str, str, str]]:
    from plantml.agent.assets import to_seconds

    out = []
    for asset in sorted({a for a, _ in edge}):
        keys = sorted((k for k in edge if k[0] == asset), key=lambda k: to_seconds(k[1]))
        given = {to_seconds(t): t for _, t in keys}
        for event in run_alarms(rule, list(given), [edge[k][0] for k in keys]):
            out.append((asset, event.kind, given[event.t]))
    return out


def test_rows_in_predictions_and_alarms_out_equal_the_edge_runtime(tmp_path, broker):
    bundle = bundle_at(tmp_path)
    rows = timestamped(fleet_rows(n_assets=3, n=50, seed=12))
    edge = edge_predict(bundle, write_rows_csv(tmp_path / "rows.csv", rows))
    values = np.array([v for v, _ in edge.values()])
    alarm = {
        "raise": float(np.quantile(values, 0.6)),
        "clear": float(np.quantile(values, 0.45)),
        "k": 2,
        "n": 3,
    }
    metrics = free_port()
    consumer = Consumer(broker.port, f"plant/{SITE}/#")
    agent = AgentProcess(agent_config(tmp_path, broker.port, metrics, alarm))
    try:
        agent.wait_ready(metrics)
        producer = mqtt_client("producer")
        connect(producer, broker.port)
        publish_rows(producer, SITE, rows)
        wait_for(lambda: len(consumer.unique("prediction")) >= len(edge), 60, "every prediction")
        got = {(m["asset"], m["time"]): m for m in consumer.unique("prediction")}
        assert set(got) == set(edge)
        for key, (value, raw_alarm) in edge.items():
            assert got[key]["value"] == pytest.approx(value, rel=1e-6, abs=1e-6)
            assert got[key]["alarm"] == bool(raw_alarm)
            assert (
                got[key]["model"]["bundle_sha256"]
                == json.loads((bundle / "manifest.json").read_text())["manifest_sha256"]
            )
        rule = AlarmRule(alarm["raise"], alarm["clear"], k=2, n=3)
        wanted = expected_events(edge, rule)
        wait_for(lambda: len(consumer.unique("alarm")) >= len(wanted), 20, "the alarm events")
        assert sorted(
            (m["asset"], m["event"], m["time"]) for m in consumer.unique("alarm")
        ) == sorted(wanted)
        assert len(wanted) >= 4

        # bad payloads: counted, reported on the rejected topic, the agent keeps going
        bad = {
            "u0": b"not json at all",
            "u1": json.dumps({"ts": rows[-1]["t"], "values": {"a": "high", "b": 1}}).encode(),
            "u2": json.dumps(
                {"ts": rows[0]["t"], "values": {"a": 1, "b": 1}}
            ).encode(),  # backwards
            "u3": json.dumps({"ts": "yesterday", "values": {"a": 1, "b": 1}}).encode(),
        }
        for asset, payload in bad.items():
            producer.publish(f"plant/{SITE}/{asset}/telemetry", payload, qos=1)
        producer.publish(
            f"plant/{SITE}/u0/telemetry",
            json.dumps({"ts": "2024-05-01T00:51:00Z", "values": {"a": 1e300, "b": 1}}),
            qos=1,
        )
        wait_for(lambda: len(consumer.unique("rejected")) >= 5, 20, "the rejected rows")
        reasons = sorted(m["reason"] for m in consumer.unique("rejected"))
        assert reasons == ["bad_time", "bad_value", "not_json", "out_of_range", "time_order"]
        assert all(m["models"][0]["version"] == "1" for m in consumer.unique("rejected"))
        text = agent.metrics(metrics)
        assert metric_value(text, "plantml_agent_rows_rejected_total", reason="not_json") == 1
        assert metric_value(text, "plantml_agent_predictions_total", mode="primary") == len(edge)
        assert metric_value(
            text, "plantml_agent_end_to_end_seconds_count", kind="prediction"
        ) == len(edge)
        assert metric_value(text, "plantml_agent_broker_connected", client="publisher") == 1
        assert agent.health(metrics)["live"]

        # the last state is retained: a new subscriber gets each asset's latest prediction
        late = Consumer(broker.port, f"plant/{SITE}/+/prediction", client_id="late")
        wait_for(lambda: len(late.messages) >= 3, 10, "the retained predictions")
        last = {a: max(t for b, t in edge if b == a) for a in ("u0", "u1", "u2")}
        assert {m["asset"]: m["time"] for _, m, retained in late.messages if retained} == last
        late.close()
        wait_for(lambda: consumer.of_kind("summary"), 10, "a summary")
        summary = consumer.of_kind("summary")[-1]
        assert summary["model"]["name"] == "test-bundle" and "sketches" in summary

        status = subprocess.run(
            [str(BIN / "plantml-agent"), "status", "--url", f"http://127.0.0.1:{metrics}"],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert status.returncode == 0, status.stderr
        assert "live yes" in status.stdout and "test-bundle" in status.stdout
        assert "not_json" in status.stdout and "resident memory bytes" in status.stdout
    finally:
        assert agent.stop() == 0
        consumer.close()


def only_redeliveries_rejected(metrics_text: str) -> bool:
    """Every rejected row was telemetry delivered again after a lost acknowledgement."""
    total = metric_value(metrics_text, "plantml_agent_rows_rejected_total")
    again = sum(
        metric_value(metrics_text, "plantml_agent_rows_rejected_total", reason=r)
        for r in ("redelivered", "duplicate")
    )
    return total == again


def first_arrivals_in_order(messages: list[dict]) -> bool:
    from plantml.agent.assets import to_seconds

    last: dict[str, float] = {}
    for m in messages:
        t = to_seconds(m["time"])
        if m["asset"] in last and t <= last[m["asset"]]:
            return False
        last[m["asset"]] = t
    return True


def test_a_broker_outage_loses_nothing_and_keeps_order(tmp_path, broker):
    bundle = bundle_at(tmp_path)
    rows = timestamped(fleet_rows(n_assets=4, n=60, seed=13))
    edge = edge_predict(bundle, write_rows_csv(tmp_path / "rows.csv", rows))
    metrics = free_port()
    consumer = Consumer(broker.port, f"plant/{SITE}/+/prediction")
    agent = AgentProcess(agent_config(tmp_path, broker.port, metrics))
    try:
        agent.wait_ready(metrics)
        producer = mqtt_client("producer")
        connect(producer, broker.port)
        sender = threading.Thread(
            target=publish_rows, args=(producer, SITE, rows), kwargs={"rate": 40}
        )
        sender.start()
        time.sleep(2.0)
        broker.stop()  # mid-stream: the producer holds its rows, the agent keeps its outputs
        time.sleep(OUTAGE_S)
        broker.start()
        sender.join()
        wait_for(lambda: len(consumer.unique("prediction")) >= len(edge), 90, "every prediction")
        unique = consumer.unique("prediction")
        assert {(m["asset"], m["time"]) for m in unique} == set(edge)
        assert len(unique) == len(edge)
        assert first_arrivals_in_order(unique)
        for m in unique:
            assert m["value"] == pytest.approx(edge[(m["asset"], m["time"])][0], rel=1e-6, abs=1e-6)
        text = agent.metrics(metrics)
        assert only_redeliveries_rejected(text)
        assert metric_value(text, "plantml_agent_connection_errors_total", client="publisher") >= 1
        wait_for(
            lambda: metric_value(agent.metrics(metrics), "plantml_agent_outbox_messages") == 0,
            20,
            "an empty outbox",
        )
    finally:
        assert agent.stop() == 0
        consumer.close()


def outbox_rows(db_path: Path) -> list[tuple[int, str, dict]]:
    db = sqlite3.connect(db_path)
    rows = [
        (i, k, json.loads(p))
        for i, k, p in db.execute("SELECT id, kind, payload FROM outbox ORDER BY id")
    ]
    db.close()
    return rows


def test_kill_9_keeps_the_outbox_and_a_restart_delivers_it(tmp_path):
    bundle = bundle_at(tmp_path)
    rows = timestamped(fleet_rows(n_assets=3, n=60, seed=14))
    csv_path = write_rows_csv(tmp_path / "rows.csv", rows)
    edge = edge_predict(bundle, csv_path)
    port, metrics = (
        free_port(),
        free_port(),
    )  # no broker on the port yet: everything stays in the outbox
    config = {
        "site": SITE,
        "models": [{"bundle": "bundle"}],
        "inputs": [{"type": "file", "path": "rows.csv", "rate": 60}],
        "mqtt": {
            "host": "127.0.0.1",
            "port": port,
            "reconnect": {"min_delay": 0.2, "max_delay": 0.5},
        },
        "metrics": {"port": metrics},
    }
    agent = AgentProcess(write_config(tmp_path, config))
    db_path = tmp_path / "state" / "agent.db"
    agent.wait_ready(metrics)
    wait_for(lambda: len(outbox_rows(db_path)) >= 40, 30, "40 messages in the outbox")
    agent.stop(signal.SIGKILL)  # mid-stream, mid-batch: no chance to flush anything
    kept = outbox_rows(db_path)
    ids = [i for i, _, _ in kept]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    db = sqlite3.connect(db_path)
    logged = db.execute("SELECT COUNT(*) FROM predictions").fetchone()[0]
    position = db.execute("SELECT position FROM positions").fetchone()[0]
    db.close()
    assert logged == sum(1 for _, k, _ in kept if k == "prediction")  # one transaction per batch
    assert 0 < position < len(rows)
    for _, _, payload in kept:
        assert (payload["asset"], payload["time"]) in edge

    broker = Broker(tmp_path / "broker", port=port).start()
    consumer = Consumer(port, f"plant/{SITE}/+/prediction")
    agent = AgentProcess(write_config(tmp_path, config))
    try:
        wait_for(lambda: len(consumer.unique("prediction")) >= len(edge), 60, "every prediction")
        unique = consumer.unique("prediction")
        assert {(m["asset"], m["time"]) for m in unique} == set(edge) and len(unique) == len(edge)
        assert {p["id"] for _, k, p in kept if k == "prediction"} <= {m["id"] for m in unique}
        assert first_arrivals_in_order(unique)
    finally:
        agent.stop()
        consumer.close()
        broker.stop()


def mqtt_run(tmp_path, broker, n_assets: int, n: int, seed: int):
    """Rows, their plantml-edge predictions, a config, a consumer and a producer."""
    bundle = bundle_at(tmp_path)
    rows = timestamped(fleet_rows(n_assets=n_assets, n=n, seed=seed))
    edge = edge_predict(bundle, write_rows_csv(tmp_path / "rows.csv", rows))
    metrics = free_port()
    config = agent_config(tmp_path, broker.port, metrics)
    consumer = Consumer(broker.port, f"plant/{SITE}/+/prediction")
    producer = mqtt_client("producer")
    connect(producer, broker.port)
    return rows, edge, metrics, config, consumer, producer


def test_kill_9_with_mqtt_input_loses_no_row(tmp_path, broker):
    """Telemetry is acknowledged only after its outputs are committed: the broker redelivers the rest."""
    rows, edge, metrics, config, consumer, producer = mqtt_run(tmp_path, broker, 4, 50, 17)
    agent = AgentProcess(config)
    agent.wait_ready(metrics)
    sender = threading.Thread(
        target=publish_rows, args=(producer, SITE, rows), kwargs={"rate": 100}
    )
    sender.start()
    wait_for(lambda: len(consumer.unique("prediction")) >= 40, 30, "the first predictions")
    agent.stop(signal.SIGKILL)
    sender.join()
    agent = AgentProcess(config)
    try:
        wait_for(lambda: len(consumer.unique("prediction")) >= len(edge), 60, "every prediction")
        unique = consumer.unique("prediction")
        assert {(m["asset"], m["time"]) for m in unique} == set(edge) and len(unique) == len(edge)
        assert first_arrivals_in_order(unique)
        text = agent.metrics(metrics)
        assert only_redeliveries_rejected(text)
    finally:
        assert agent.stop() == 0
        consumer.close()


def test_sigterm_then_restart_resumes_every_window(tmp_path, broker):
    rows, edge, metrics, config, consumer, producer = mqtt_run(tmp_path, broker, 3, 40, 15)
    agent = AgentProcess(config)
    agent.wait_ready(metrics)
    publish_rows(producer, SITE, rows[:60])
    wait_for(lambda: len(consumer.unique("prediction")) >= 54, 30, "the first predictions")
    assert agent.stop(signal.SIGTERM) == 0
    assert "stopped" in agent.log()
    publish_rows(producer, SITE, rows[60:])  # the broker keeps them for the agent's session
    agent = AgentProcess(config)
    try:
        wait_for(lambda: len(consumer.unique("prediction")) >= len(edge), 60, "every prediction")
        unique = consumer.unique("prediction")
        assert {(m["asset"], m["time"]) for m in unique} == set(edge) and len(unique) == len(edge)
        text = agent.metrics(metrics)
        assert metric_value(text, "plantml_agent_rows_rejected_total") == 0
    finally:
        assert agent.stop() == 0
        consumer.close()


def test_tls_refuses_a_wrong_password_and_an_untrusted_broker_while_buffering(tmp_path):
    certs = tmp_path / "certs"
    certs.mkdir()
    ca_path, ca_cert, ca_key = make_ca(certs, "ca")
    tls = make_server_cert(certs, ca_cert, ca_key)
    other_ca, _, _ = make_ca(certs, "other-ca")
    broker = Broker(tmp_path / "broker", tls=tls, users={"agent": "right-password"}).start()
    bundle_at(tmp_path)
    write_rows_csv(tmp_path / "rows.csv", timestamped(fleet_rows(n_assets=1, n=8, seed=16)))
    (tmp_path / "good.pw").write_text("right-password\n")
    (tmp_path / "bad.pw").write_text("wrong-password\n")

    def run(name: str, ca: Path, password: str):
        folder = tmp_path / name
        folder.mkdir()
        (folder / "bundle").symlink_to(tmp_path / "bundle")
        (folder / "rows.csv").symlink_to(tmp_path / "rows.csv")
        metrics = free_port()
        config = {
            "site": SITE,
            "agent_id": name,
            "models": [{"bundle": "bundle"}],
            "inputs": [{"type": "file", "path": "rows.csv"}],
            "mqtt": {
                "host": "127.0.0.1",
                "port": broker.port,
                "username": "agent",
                "password_file": str(tmp_path / password),
                "tls": {"ca_file": str(ca)},
                "reconnect": {"min_delay": 0.2, "max_delay": 0.5},
            },
            "metrics": {"port": metrics},
        }
        return AgentProcess(write_config(folder, config)), metrics, folder

    consumer = Consumer(
        broker.port, f"plant/{SITE}/+/prediction", tls=tls, user="agent", password="right-password"
    )
    try:
        wrong, m1, f1 = run("wrong-password", ca_path, "bad.pw")
        untrusted, m2, f2 = run("untrusted", other_ca, "good.pw")
        good, m3, _f3 = run("good", ca_path, "good.pw")
        for agent, metrics in ((wrong, m1), (untrusted, m2), (good, m3)):
            agent.wait_ready(metrics)
        wait_for(lambda: len(consumer.unique("prediction")) == 6, 30, "predictions over TLS")

        def error(agent, metrics):
            health = agent.health(metrics)
            return health["publisher"]["error"] if health and health["publisher"]["error"] else None

        message = wait_for(lambda: error(wrong, m1), 20, "the credentials error")
        # Mosquitto answers a wrong password with "Not authorized" (MQTT 5 reason 0x87)
        assert "refused the credentials (Not authorized)" in message
        assert "bad.pw" in message and "wrong-password" not in message
        message = wait_for(lambda: error(untrusted, m2), 20, "the certificate error")
        assert "does not verify" in message and "ca_file" in message
        for agent, metrics, folder, reason in ((wrong, m1, f1, "auth"), (untrusted, m2, f2, "tls")):
            text = agent.metrics(metrics)
            assert (
                metric_value(
                    text, "plantml_agent_connection_errors_total", client="publisher", reason=reason
                )
                >= 1
            )
            assert metric_value(text, "plantml_agent_broker_connected", client="publisher") == 0
            assert agent.health(metrics)["live"]
            kept = wait_for(
                lambda f=folder: (
                    len(outbox_rows(f / "state" / "agent.db")) >= 6
                    and outbox_rows(f / "state" / "agent.db")
                ),
                20,
                "the buffered predictions",
            )
            assert sum(1 for _, k, _ in kept if k == "prediction") == 6
        assert "refused the credentials" in wrong.log() and "does not verify" in untrusted.log()
    finally:
        for agent in (wrong, untrusted, good):
            agent.stop()
        consumer.close()
        broker.stop()
