"""The agent's SQLite state: outbox order and bound, prediction-log retention, resume rows."""

from __future__ import annotations

import sqlite3

import pytest

from plantml.agent.errors import AgentError
from plantml.agent.store import OutMessage, Store


def msg(i: int, size: int = 10) -> OutMessage:
    return OutMessage(f"plant/s/a{i % 3}/prediction", b"x" * size, True, "prediction", f"id{i}")


def test_outbox_keeps_order_and_exact_byte_counts(tmp_path):
    store = Store(tmp_path / "agent.db")
    with store.transaction():
        store.add_messages([msg(i) for i in range(5)], now=1.0)
    pending = store.pending(0, 10)
    assert [m.payload for m in pending] == [b"x" * 10] * 5
    ids = [m.id for m in pending]
    assert ids == sorted(ids)
    size = 10 + len("plant/s/a0/prediction")
    assert store.outbox_depth() == (5, 5 * size)
    with store.transaction():
        store.delete_messages(ids[:2])
    assert store.outbox_depth() == (3, 3 * size) and store.pending(0, 10)[0].id == ids[2]
    with store.transaction():  # ids are never reused: order survives deletes
        store.add_messages([msg(9)], now=2.0)
    assert store.pending(ids[-1], 10)[0].id > ids[-1]


def test_outbox_bound_drops_the_oldest_and_counts(tmp_path):
    store = Store(tmp_path / "agent.db")
    size = 100 + len("plant/s/a0/prediction")
    with store.transaction():
        store.add_messages([msg(i, 100) for i in range(10)], now=1.0)
        dropped = store.bound_outbox(4 * size)
    assert dropped == 6 and store.meta("dropped") == 6
    assert [m.payload for m in store.pending(0, 10)] == [b"x" * 100] * 4
    assert store.outbox_depth() == (4, 4 * size)
    with store.transaction():
        assert store.bound_outbox(10**9) == 0


def test_rollback_leaves_nothing(tmp_path):
    store = Store(tmp_path / "agent.db")
    with pytest.raises(RuntimeError), store.transaction():
        store.add_messages([msg(1)], now=1.0)
        raise RuntimeError("crash inside a batch")
    assert store.outbox_depth() == (0, 0) and store.pending(0, 10) == []


def test_prediction_log_retention_by_age_and_size(tmp_path):
    store = Store(tmp_path / "agent.db")
    row = ("m", "a", "t", 0.5, 0, 0, "p" * 100)
    with store.transaction():
        store.log_predictions([row] * 10, now=100.0)
        store.log_predictions([row] * 10, now=200.0)
    with store.transaction():
        assert store.prune_log(max_age=150, max_bytes=10**9, now=260.0) == 10
    with store.transaction():
        removed = store.prune_log(max_age=10**9, max_bytes=450, now=260.0)
    assert removed == 6  # the oldest, until the payloads fit in max_bytes
    assert store.meta("log_bytes") == 400


def test_recent_rows_positions_and_states(tmp_path):
    store = Store(tmp_path / "agent.db")
    with store.transaction():
        store.add_recent_rows([("a", i, f'{{"i": {i}}}') for i in range(1, 8)], keep=3)
        store.add_recent_rows([("b", 1, '{"i": 1}')], keep=3)
        store.set_position("file0", 42)
        store.save_states({"a": {"seq": 7}})
    rows = Store(tmp_path / "agent.db").load_recent_rows()
    assert [seq for seq, _ in rows["a"]] == [5, 6, 7] and rows["a"][-1][1] == '{"i": 7}'
    assert len(rows["b"]) == 1
    assert store.position("file0") == 42 and store.position("other") == 0
    assert store.load_states() == {"a": {"seq": 7}}


def test_rejected_rows_keep_the_newest(tmp_path):
    store = Store(tmp_path / "agent.db")
    with store.transaction():
        store.log_rejected(
            [("src", "a", None, "x", "bad_value", f"m{i}") for i in range(20)], 1.0, keep=5
        )
    recent = store.recent_rejected(10)
    assert [r["message"] for r in recent] == ["m19", "m18", "m17", "m16", "m15"]


def test_a_newer_schema_is_refused(tmp_path):
    Store(tmp_path / "agent.db").close()
    db = sqlite3.connect(tmp_path / "agent.db")
    db.execute("PRAGMA user_version=99")
    db.commit()
    db.close()
    with pytest.raises(AgentError, match="newer plantml-agent"):
        Store(tmp_path / "agent.db")


def test_a_corrupt_file_is_a_clear_error(tmp_path):
    (tmp_path / "agent.db").write_bytes(b"this is not a database" * 100)
    with pytest.raises(AgentError, match="cannot open the agent state"):
        Store(tmp_path / "agent.db")
