"""The store (SQLite here; PostgreSQL in the slow tests), migrations, ingest parsing."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sqlalchemy import create_engine, inspect, text

from plantml.monitoring import store as store_module
from plantml.monitoring.errors import InputFileError, StoreError
from plantml.monitoring.ingest import parse_message, to_time
from plantml.monitoring.store import LATEST, Store, migrate, normalize_url


def test_migrations_apply_in_order_and_upgrade_an_old_store(tmp_path):
    url = f"sqlite:///{tmp_path / 'm.db'}"
    engine = create_engine(url)
    assert migrate(engine, target=1) == 1
    tables = set(inspect(engine).get_table_names())
    assert {"predictions", "summaries", "events", "schema_version"} <= tables
    assert "alerts" not in tables
    engine.dispose()
    store = Store(url)  # opening an old store upgrades it
    assert store.version == LATEST == 2
    assert "alerts" in inspect(store.engine).get_table_names()
    with store.engine.connect() as conn:
        rows = conn.execute(text("SELECT version, description FROM schema_version")).all()
    assert [r[0] for r in rows] == [1, 2]
    assert Store(url).version == 2  # idempotent


def test_a_newer_store_is_refused(tmp_path):
    url = f"sqlite:///{tmp_path / 'm.db'}"
    Store(url)
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO schema_version VALUES (99, 'from the future', 0)"))
    with pytest.raises(StoreError, match=r"schema version 99, newer .* upgrade plantml"):
        Store(url)


def test_bad_urls_are_named(tmp_path):
    assert normalize_url(tmp_path / "x.db") == f"sqlite:///{tmp_path / 'x.db'}"
    assert normalize_url("postgresql://u@h/db") == "postgresql+psycopg://u@h/db"
    with pytest.raises(StoreError, match="cannot open the store"):
        Store("nosuchdriver://x")
    with pytest.raises(StoreError, match="cannot open the store"):
        Store(f"sqlite:///{tmp_path / 'missing' / 'dir' / 'x.db'}")


def test_duplicates_are_stored_once_and_read_back(tmp_path):
    store = Store(tmp_path / "m.db")
    rows = [
        {
            "msg_id": f"id{i}",
            "asset": "p1",
            "time": float(i),
            "value": 0.1 * i,
            "alarm": i % 2,
            "condition": "low",
            "bundle_sha": "abc",
        }
        for i in range(5)
    ]
    assert store.add_predictions(rows) == 5
    assert store.add_predictions([*rows[:3], {**rows[0], "msg_id": "new", "time": 9.0}]) == 1
    log, last = store.prediction_log("abc", since=1.0, until=9.0)
    assert log.time.tolist() == [1.0, 2.0, 3.0, 4.0] and last == 5
    assert log.alarm.tolist() == [1, 0, 1, 0]
    later, _ = store.prediction_log("abc", after_id=5)
    assert later.time.tolist() == [9.0]
    store.add_events([{"msg_id": "e1", "asset": "p1", "time": 7.0, "kind": "failure"}])
    events = store.event_log()
    assert events.kind.tolist() == ["failure"] and np.isnan(events.end_time[0])
    store.add_summaries(
        [{"msg_id": "s1", "period_end": 3.0, "sketch": {"a": [1, 2]}, "bundle_sha": "abc"}]
    )
    assert store.summary_records("abc")[0]["sketch"] == {"a": [1, 2]}
    store.save_state("abc", {"x": 1}, 4, 5)
    store.save_state("abc", {"x": 2}, 6, 7)
    assert store.load_state("abc") == {
        "state": {"x": 2},
        "summary_watermark": 6,
        "prediction_watermark": 7,
    }
    assert store.counts() == {"predictions": 6, "summaries": 1, "events": 1, "alerts": 0}


def test_agent_messages_are_parsed(tmp_path):
    model = {"slot": "primary", "name": "pump", "version": "v1", "bundle_sha256": "abc"}
    kind, rec = parse_message(
        "plant/s1/p7/prediction",
        json.dumps(
            {
                "id": "m1",
                "site": "s1",
                "agent": "a1",
                "asset": "p7",
                "time": "2024-05-01T00:00:00Z",
                "model": model,
                "value": 0.7,
                "alarm": True,
                "condition": "high",
            }
        ),
    )
    assert kind == "prediction"
    assert rec["time"] == to_time("2024-05-01T00:00:00") == 1714521600.0
    assert (rec["asset"], rec["alarm"], rec["bundle_sha"], rec["condition"]) == (
        "p7",
        1,
        "abc",
        "high",
    )
    kind, rec = parse_message(
        "plant/s1/p7/alarm",
        json.dumps({"id": "m2", "asset": "p7", "time": 12, "event": "raised", "model": model}),
    )
    assert kind == "event" and rec["kind"] == "alarm_raised" and rec["time"] == 12.0
    summary = {
        "id": "m3",
        "agent": "a1",
        "model": model,
        "period": {"start": 0, "end": 60},
        "counts": {"rows": 10},
        "sketches": {"kind": "plantml-drift", "sketch": {"profile_sha256": "p"}},
    }
    kind, rec = parse_message("plant/s1/_agent/summary", json.dumps(summary))
    assert kind == "summary" and rec["period_end"] == 60.0 and rec["profile_sha"] == "p"
    assert "sketches" not in rec["body"]
    with pytest.raises(InputFileError, match="not JSON"):
        parse_message("plant/s1/p7/prediction", b"{oops")
    with pytest.raises(InputFileError, match="is not a number or ISO time"):
        parse_message("plant/s1/p7/prediction", json.dumps({"time": "yesterday"}))
    with pytest.raises(InputFileError, match=r"period\.end"):
        parse_message("plant/s1/_agent/summary", json.dumps({"id": "x"}))


def test_event_file_errors(tmp_path):
    from plantml.monitoring.ingest import event_records

    (tmp_path / "e.csv").write_text("asset,time,kind\np1,5,failure\np1,6,exploded\n")
    with pytest.raises(InputFileError, match="row 2: event kind 'exploded' is not one of"):
        event_records(tmp_path / "e.csv")
    (tmp_path / "f.csv").write_text("asset,when,kind\np1,5,failure\n")
    with pytest.raises(InputFileError, match=r"lacks the column\(s\) \['time'\]"):
        event_records(tmp_path / "f.csv")


def test_migration_list_is_ordered():
    numbers = [m[0] for m in store_module.MIGRATIONS]
    assert numbers == sorted(numbers) == list(range(1, len(numbers) + 1))


def test_prediction_files_of_failure_and_class_bundles(tmp_path):
    from plantml.edge import load_bundle
    from plantml.monitoring.ingest import prediction_records
    from tests.bundles import make_bundle

    failure = load_bundle(make_bundle(tmp_path / "f", threshold=0.5))
    (tmp_path / "p.csv").write_text(
        "asset,time,condition,score,alarm\nu1,3,all,0.7,1\nu1,4,all,0.2,0\n"
    )
    rows = prediction_records(tmp_path / "p.csv", failure)
    assert [(r["time"], r["value"], r["alarm"]) for r in rows] == [(3.0, 0.7, 1), (4.0, 0.2, 0)]
    assert rows[0]["bundle_sha"] == failure.manifest["manifest_sha256"]
    task = {"kind": "class", "output_name": "fault_class", "classes": ["normal", "IR007"]}
    classes = load_bundle(make_bundle(tmp_path / "c", task=task))
    (tmp_path / "c.csv").write_text(
        "asset,time,condition,fault_class,probability\nu1,3,all,IR007,0.9\n"
    )
    assert prediction_records(tmp_path / "c.csv", classes)[0]["value"] == 1.0
    (tmp_path / "bad.csv").write_text("asset,time,condition,fault_class\nu1,3,all,OR021\n")
    with pytest.raises(InputFileError, match="class 'OR021' is not one of"):
        prediction_records(tmp_path / "bad.csv", classes)
    with pytest.raises(InputFileError, match=r"lacks the column\(s\) \['fault_class'\]"):
        prediction_records(tmp_path / "p.csv", classes)
