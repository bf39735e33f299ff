"""The store on a real PostgreSQL server, ingest from a real Mosquitto broker, alerts to a
real webhook receiver and MQTT topic. No mocks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import create_engine, text

from plantml.monitoring.scenarios import Drift
from plantml.monitoring.sketch import ProfileSketch
from plantml.monitoring.store import Store, migrate
from tests.bundles import make_bundle
from tests.monitoring_data import CONDITIONS, FEATURES, fleet
from tests.services import http_receiver, mosquitto, postgres

pytestmark = pytest.mark.slow
BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def pg_url():
    with postgres() as url:
        yield url


@pytest.fixture(scope="module")
def broker():
    with mosquitto(password="s3cret") as port:
        yield port


@pytest.fixture
def bundle(tmp_path, monitoring_profile) -> Path:
    conditions = {
        "mode": "column",
        "column": "regime",
        "names": CONDITIONS,
        "categories": CONDITIONS,
    }
    task = {"output_name": "failure_probability"}
    return make_bundle(
        tmp_path / "bundle",
        features=FEATURES,
        conditions=conditions,
        profile=monitoring_profile,
        threshold=0.5,
        task=task,
    )


def _fresh_db(pg_url: str, name: str) -> str:
    engine = create_engine(
        pg_url.replace("postgresql://", "postgresql+psycopg://"), isolation_level="AUTOCOMMIT"
    )
    with engine.connect() as conn:
        conn.execute(text(f"CREATE DATABASE {name}"))
    engine.dispose()
    return pg_url.rsplit("/", 1)[0] + f"/{name}"


def test_postgres_store_migrates_once_under_concurrency_and_dedupes(pg_url):
    url = _fresh_db(pg_url, "concurrent")
    engine = create_engine(url.replace("postgresql://", "postgresql+psycopg://"))
    assert migrate(engine, target=1) == 1
    errors, versions = [], []

    def open_store():
        try:
            versions.append(Store(url).version)
        except Exception as exc:  # the assertion below shows it
            errors.append(exc)

    threads = [threading.Thread(target=open_store) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and versions == [2, 2, 2, 2]
    with engine.connect() as conn:
        assert conn.execute(
            text("SELECT version FROM schema_version ORDER BY 1")
        ).scalars().all() == [1, 2]
    store = Store(url)
    rows = [
        {"msg_id": f"m{i}", "asset": "p", "time": float(i), "value": 0.5, "bundle_sha": "b"}
        for i in range(100)
    ]
    assert store.add_predictions(rows) == 100
    assert store.add_predictions([*rows[50:], {**rows[0], "msg_id": "other"}]) == 1
    log, _ = store.prediction_log("b", since=10, until=20)
    assert log.time.tolist() == [float(i) for i in range(10, 20)]
    assert "s3cret" not in Store(url.replace("plantml@", "plantml:s3cret@")).safe_url


def _publish(port: int, messages: list[tuple[str, dict]], password: str = "s3cret") -> None:
    import paho.mqtt.client as mqtt

    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    client.username_pw_set("plantml", password)
    client.connect("127.0.0.1", port)
    client.loop_start()
    for topic, payload in messages:
        client.publish(topic, json.dumps(payload), qos=1).wait_for_publish(5)
    client.disconnect()
    client.loop_stop()


def _summary(profile, seq: int, x, codes, end: float) -> dict:
    sketch = ProfileSketch(profile).update(x, codes)
    model = {"slot": "primary", "name": "test-bundle", "version": "1", "bundle_sha256": "SHA"}
    return {
        "id": f"sum{seq}",
        "kind": "summary",
        "site": "s1",
        "agent": "edge-7",
        "seq": seq,
        "model": model,
        "period": {"start": end - 60, "end": end, "seconds": 60},
        "counts": {"rows": len(x)},
        "sketches": {"kind": "plantml-drift", "rows": len(x), "sketch": sketch.to_dict()},
    }


def test_ingest_from_mosquitto_into_postgres(pg_url, broker, monitoring_profile):
    url = _fresh_db(pg_url, "ingest")
    env = {**os.environ, "MQTT_PW": "s3cret"}
    proc = subprocess.Popen(
        [
            str(BIN / "plantml-ingest"),
            "mqtt",
            "--store",
            url,
            "--port",
            str(broker),
            "--username",
            "plantml",
            "--password-env",
            "MQTT_PW",
            "--max-messages",
            "7",
            "--duration",
            "60",
            "--flush-seconds",
            "0.2",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    line = proc.stdout.readline()
    assert "subscribed to plant/+/+/prediction" in line, line + proc.stderr.read()
    model = {"slot": "primary", "name": "test-bundle", "version": "1", "bundle_sha256": "SHA"}
    pred = {
        "id": "p1",
        "kind": "prediction",
        "site": "s1",
        "asset": "pump-3",
        "time": "2024-05-01T10:00:00",
        "model": model,
        "output": "failure_probability",
        "value": 0.8,
        "alarm": True,
        "condition": "high",
    }
    x, codes, _ = fleet(2, 50, seed=1)
    messages = [
        ("plant/s1/pump-3/prediction", pred),
        ("plant/s1/pump-3/prediction", pred),  # delivered twice (QoS 1): stored once
        (
            "plant/s1/pump-3/prediction",
            {**pred, "id": "p2", "time": "2024-05-01T11:00:00", "alarm": False},
        ),
        (
            "plant/s1/pump-3/alarm",
            {
                "id": "a1",
                "asset": "pump-3",
                "time": "2024-05-01T10:00:00",
                "event": "raised",
                "model": model,
            },
        ),
        ("plant/s1/_agent/summary", _summary(monitoring_profile, 1, x, codes, 1714557600.0)),
        ("plant/s1/pump-3/prediction", {"id": "bad", "time": "never"}),  # skipped with a warning
        ("plant/s1/_agent/summary", _summary(monitoring_profile, 2, x, codes, 1714557660.0)),
    ]
    _publish(broker, messages)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "7 messages received, 5 new records stored, 1 skipped" in out
    store = Store(url)
    assert store.counts() == {"predictions": 2, "summaries": 2, "events": 1, "alerts": 0}
    log, _ = store.prediction_log("SHA")
    assert log.alarm.tolist() == [1, 0] and log.time[0] == 1714557600.0
    sketch = ProfileSketch.from_dict(store.summary_records("SHA")[0]["sketch"], monitoring_profile)
    assert sketch.n_rows == 100


def test_ingest_with_a_wrong_password_is_one_error_line(broker, tmp_path):
    env = {**os.environ, "MQTT_PW": "wrong"}
    r = subprocess.run(
        [
            str(BIN / "plantml-ingest"),
            "mqtt",
            "--store",
            str(tmp_path / "s.db"),
            "--port",
            str(broker),
            "--username",
            "plantml",
            "--password-env",
            "MQTT_PW",
            "--duration",
            "1",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert r.returncode == 2 and "refused the connection" in r.stderr


def test_watch_sends_alerts_to_a_webhook_and_an_mqtt_topic(
    tmp_path, bundle, broker, monitoring_profile
):
    import paho.mqtt.client as mqtt

    from plantml.edge import load_bundle

    sha = load_bundle(bundle).manifest["manifest_sha256"]
    db = tmp_path / "monitor.db"
    store = Store(db)
    x, codes, runs = fleet(6, 400, seed=3)
    drifted, _ = Drift("bias", 0, 2.0, condition=2).apply(
        monitoring_profile, 0, x, codes, runs, np.random.default_rng(0)
    )

    def add(seq, rows, row_codes):
        rec = _summary(monitoring_profile, seq, rows, row_codes, 1000.0 + 60 * seq)
        rec["model"]["bundle_sha256"] = sha
        from plantml.monitoring.ingest import summary_record

        store.add_summaries([summary_record(rec)])

    add(1, x[:1200], codes[:1200])
    received = []
    listener = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    listener.username_pw_set("plantml", "s3cret")
    listener.on_message = lambda c, u, m: received.append(json.loads(m.payload))
    listener.connect("127.0.0.1", broker)
    listener.subscribe("plant/alerts", qos=1)
    listener.loop_start()
    time.sleep(0.5)
    env = {**os.environ, "MQTT_PW": "s3cret"}
    with http_receiver() as (url, posted):
        watch = [
            str(BIN / "plantml-monitor"),
            "watch",
            "--bundle",
            str(bundle),
            "--store",
            str(db),
            "--out",
            str(tmp_path / "watch"),
            "--once",
            "--sink",
            "log",
            "--sink",
            url,
            "--sink",
            f"mqtt://127.0.0.1:{broker}/plant/alerts",
            "--mqtt-username",
            "plantml",
            "--mqtt-password-env",
            "MQTT_PW",
        ]
        first = subprocess.run(watch, capture_output=True, text=True, timeout=120, env=env)
        assert first.returncode == 0, first.stderr
        assert not posted  # in control: nothing to say
        add(2, drifted[1200:2400], codes[1200:2400])
        second = subprocess.run(watch, capture_output=True, text=True, timeout=120, env=env)
        assert second.returncode == 0, second.stderr
        deadline = time.monotonic() + 10
        while not received and time.monotonic() < deadline:
            time.sleep(0.1)
    listener.loop_stop()
    listener.disconnect()
    drift = [p["body"] for p in posted if p["body"]["rule"] == "input_drift"]
    assert posted[0]["content_type"] == "application/json"
    assert drift and drift[0]["condition"] == "high" and drift[0]["signal"] in ("a", "multivariate")
    alert = next(a for a in drift if a["signal"] == "a")
    assert alert["status"] == "open" and alert["details"]["mean_shift"] == pytest.approx(
        2.0, abs=0.4
    )
    # since: where the CUSUM excursion began (the first check if its z was already above k)
    assert alert["since"] in (1060.0, 1120.0) and alert["opened"] == 1120.0
    assert f"input drift of a in condition 'high' since {alert['since']:g}" in alert["message"]
    assert Path(alert["report"]).is_file() and "check-000002" in alert["report"]
    assert alert["model"]["bundle_sha256"] == sha
    assert [a["message"] for a in received if a["rule"] == "input_drift"] == [
        a["message"] for a in drift
    ]
    assert "input drift of a in condition 'high'" in second.stderr  # the log sink
