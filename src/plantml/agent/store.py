"""The agent's durable state: one SQLite file (WAL), written in one transaction per batch.

Tables (schema version in ``PRAGMA user_version``):

- ``outbox``: messages not yet acknowledged by the broker, oldest first
  (``id`` AUTOINCREMENT: never reused, so the order survives deletes). Bounded
  in bytes: when full, the oldest are dropped and counted (``meta.dropped``).
- ``predictions``: the local prediction log, pruned by age and size.
- ``rejected``: the most recent rejected rows (source, asset, column, reason).
- ``recent_rows``: each asset's last rows, replayed on start so windows resume.
- ``asset_state``: alarm and sensor state per asset (JSON).
- ``positions``: how far each replayable input has been read (file line).
- ``meta``: counters (``outbox_bytes``, ``outbox_count`` kept exact by triggers,
  ``dropped``, ``summary_seq``).

A batch's outbox messages, log rows, input positions and states are written
in one transaction, so a crash (kill -9, power cut with ``synchronous=full``)
leaves either all of a batch or none of it. Each thread opens its own
:class:`Store` connection on the same file.
"""

from __future__ import annotations

import json
import math
import sqlite3
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from plantml.agent.errors import AgentError

SCHEMA_VERSION = 1
_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT, topic TEXT NOT NULL, payload BLOB NOT NULL,
    retain INTEGER NOT NULL, kind TEXT NOT NULL, msg_id TEXT NOT NULL, created REAL NOT NULL,
    received REAL, row_time REAL, bytes INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS predictions (
    id INTEGER PRIMARY KEY AUTOINCREMENT, created REAL NOT NULL, model TEXT NOT NULL,
    asset TEXT NOT NULL, time TEXT, value REAL, alarm INTEGER, degraded INTEGER NOT NULL,
    payload TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS predictions_created ON predictions (created);
CREATE TABLE IF NOT EXISTS rejected (
    id INTEGER PRIMARY KEY AUTOINCREMENT, created REAL NOT NULL, source TEXT, asset TEXT,
    model TEXT, column_name TEXT, reason TEXT NOT NULL, message TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS recent_rows (
    asset TEXT NOT NULL, seq INTEGER NOT NULL, row TEXT NOT NULL, PRIMARY KEY (asset, seq));
CREATE TABLE IF NOT EXISTS asset_state (asset TEXT PRIMARY KEY, state TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS positions (input TEXT PRIMARY KEY, position INTEGER NOT NULL);
INSERT OR IGNORE INTO meta VALUES ('outbox_bytes', 0), ('outbox_count', 0), ('dropped', 0),
    ('summary_seq', 0), ('log_bytes', 0);
CREATE TRIGGER IF NOT EXISTS outbox_add AFTER INSERT ON outbox BEGIN
    UPDATE meta SET value = value + NEW.bytes WHERE key = 'outbox_bytes';
    UPDATE meta SET value = value + 1 WHERE key = 'outbox_count'; END;
CREATE TRIGGER IF NOT EXISTS outbox_del AFTER DELETE ON outbox BEGIN
    UPDATE meta SET value = value - OLD.bytes WHERE key = 'outbox_bytes';
    UPDATE meta SET value = value - 1 WHERE key = 'outbox_count'; END;
CREATE TRIGGER IF NOT EXISTS log_add AFTER INSERT ON predictions BEGIN
    UPDATE meta SET value = value + length(NEW.payload) WHERE key = 'log_bytes'; END;
CREATE TRIGGER IF NOT EXISTS log_del AFTER DELETE ON predictions BEGIN
    UPDATE meta SET value = value - length(OLD.payload) WHERE key = 'log_bytes'; END;
"""


@dataclass
class OutMessage:
    """One message for the broker: topic, JSON payload, and what the metrics need."""

    topic: str
    payload: bytes
    retain: bool
    kind: str
    msg_id: str
    received: float | None = None
    row_time: float | None = None


@dataclass
class Queued:
    """A message read back from the outbox."""

    id: int
    topic: str
    payload: bytes
    retain: bool
    kind: str
    received: float | None
    row_time: float | None


class Store:
    """One connection to the agent's SQLite file (use one per thread)."""

    def __init__(self, path: str | Path, synchronous: str = "full"):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.db = sqlite3.connect(
                self.path, timeout=30.0, isolation_level=None, check_same_thread=False
            )
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA journal_size_limit=67108864")  # WAL truncated past 64 MiB
            self.db.execute(f"PRAGMA synchronous={synchronous.upper()}")
            version = self.db.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise AgentError(
                    f"{self.path} was written by a newer plantml-agent (schema {version}, this "
                    f"one reads {SCHEMA_VERSION}); upgrade the agent or move the file away"
                )
            self.db.executescript(_SCHEMA)
            self.db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        except sqlite3.DatabaseError as exc:
            raise AgentError(
                f"cannot open the agent state {self.path} ({exc}); check the disk and the "
                "path (store.path), or move a corrupted file away"
            ) from None

    def close(self) -> None:
        self.db.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE … COMMIT (rollback on error): one writer at a time, ids in order."""
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield self.db
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    # -- counters ---------------------------------------------------------------------------------
    def meta(self, key: str) -> int:
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return int(row[0]) if row else 0

    def bump(self, key: str, by: int = 1) -> int:
        """Add to a counter (inside a transaction) and return the new value."""
        self.db.execute(
            "INSERT INTO meta VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = value + ?",
            (key, by, by),
        )
        return self.meta(key)

    def set_meta(self, key: str, value: int) -> None:
        self.db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, int(value)))

    # -- outbox -----------------------------------------------------------------------------------
    def add_messages(self, messages: Iterable[OutMessage], now: float) -> None:
        self.db.executemany(
            "INSERT INTO outbox (topic, payload, retain, kind, msg_id, created, received, "
            "row_time, bytes) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (
                    m.topic,
                    m.payload,
                    int(m.retain),
                    m.kind,
                    m.msg_id,
                    now,
                    m.received,
                    m.row_time,
                    len(m.payload) + len(m.topic),
                )
                for m in messages
            ],
        )

    def bound_outbox(self, max_bytes: int) -> int:
        """Drop the oldest messages until the outbox holds at most ``max_bytes``; returns how many."""
        dropped = 0
        while self.meta("outbox_bytes") > max_bytes:
            excess = self.meta("outbox_bytes") - max_bytes
            oldest = self.db.execute(
                "SELECT id, bytes FROM outbox ORDER BY id LIMIT 1000"
            ).fetchall()
            if not oldest:
                break
            ids, total = [], 0
            for mid, size in oldest:
                ids.append(mid)
                total += size
                if total >= excess:
                    break
            self.db.execute(f"DELETE FROM outbox WHERE id IN ({','.join('?' * len(ids))})", ids)
            dropped += len(ids)
        if dropped:
            self.bump("dropped", dropped)
        return dropped

    def pending(self, after_id: int, limit: int) -> list[Queued]:
        rows = self.db.execute(
            "SELECT id, topic, payload, retain, kind, received, row_time FROM outbox "
            "WHERE id > ? ORDER BY id LIMIT ?",
            (after_id, limit),
        ).fetchall()
        return [Queued(r[0], r[1], bytes(r[2]), bool(r[3]), r[4], r[5], r[6]) for r in rows]

    def delete_messages(self, ids: list[int]) -> None:
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            self.db.execute(f"DELETE FROM outbox WHERE id IN ({','.join('?' * len(chunk))})", chunk)

    def outbox_depth(self) -> tuple[int, int]:
        """(messages, bytes) waiting in the outbox."""
        return self.meta("outbox_count"), self.meta("outbox_bytes")

    def oldest_message_age(self, now: float) -> float | None:
        row = self.db.execute("SELECT MIN(created) FROM outbox").fetchone()
        return None if row[0] is None else now - row[0]

    # -- prediction log and rejected rows ---------------------------------------------------------
    def log_predictions(self, rows: list[tuple], now: float) -> None:
        """rows: (model, asset, time, value, alarm, degraded, payload JSON)."""
        self.db.executemany(
            "INSERT INTO predictions (created, model, asset, time, value, alarm, degraded, "
            "payload) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [(now, *r) for r in rows],
        )

    def prune_log(self, max_age: float, max_bytes: int, now: float) -> int:
        """Delete log rows older than ``max_age`` s, then the oldest beyond ``max_bytes``."""
        removed = self.db.execute(
            "DELETE FROM predictions WHERE created < ?", (now - max_age,)
        ).rowcount
        while self.meta("log_bytes") > max_bytes:
            count = self.db.execute("SELECT COUNT(*) FROM predictions").fetchone()[0]
            if count == 0:
                break
            total = self.meta("log_bytes")
            n = min(1000, max(1, math.ceil((total - max_bytes) / (total / count))))
            removed += self.db.execute(
                "DELETE FROM predictions WHERE id IN (SELECT id FROM predictions ORDER BY id LIMIT ?)",
                (n,),
            ).rowcount
        return removed

    def log_rejected(self, rows: list[tuple], now: float, keep: int) -> None:
        """rows: (source, asset, model, column, reason, message); keeps the newest ``keep``."""
        self.db.executemany(
            "INSERT INTO rejected (created, source, asset, model, column_name, reason, message) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            [(now, *r) for r in rows],
        )
        last = self.db.execute("SELECT MAX(id) FROM rejected").fetchone()[0] or 0
        self.db.execute("DELETE FROM rejected WHERE id <= ?", (last - keep,))

    def recent_rejected(self, limit: int = 10) -> list[dict[str, Any]]:
        rows = self.db.execute(
            "SELECT created, source, asset, model, column_name, reason, message FROM rejected "
            "ORDER BY id DESC LIMIT ?",
            (limit,),
        ).fetchall()
        keys = ("created", "source", "asset", "model", "column", "reason", "message")
        return [dict(zip(keys, r, strict=True)) for r in rows]

    # -- resume state -----------------------------------------------------------------------------
    def add_recent_rows(self, rows: list[tuple[str, int, str]], keep: int) -> None:
        """rows: (asset, seq, row JSON); keeps each touched asset's last ``keep`` rows."""
        self.db.executemany("INSERT OR REPLACE INTO recent_rows VALUES (?, ?, ?)", rows)
        newest: dict[str, int] = {}
        for asset, seq, _ in rows:
            newest[asset] = max(seq, newest.get(asset, seq))
        self.db.executemany(
            "DELETE FROM recent_rows WHERE asset = ? AND seq <= ?",
            [(a, s - keep) for a, s in newest.items()],
        )

    def load_recent_rows(self) -> dict[str, list[tuple[int, str]]]:
        """Each asset's kept rows: [(seq, row JSON)], oldest first."""
        out: dict[str, list[tuple[int, str]]] = {}
        for asset, seq, row in self.db.execute(
            "SELECT asset, seq, row FROM recent_rows ORDER BY asset, seq"
        ):
            out.setdefault(asset, []).append((seq, row))
        return out

    def save_states(self, states: dict[str, dict]) -> None:
        self.db.executemany(
            "INSERT OR REPLACE INTO asset_state VALUES (?, ?)",
            [(a, json.dumps(s, separators=(",", ":"))) for a, s in states.items()],
        )

    def load_states(self) -> dict[str, dict]:
        return {
            a: json.loads(s) for a, s in self.db.execute("SELECT asset, state FROM asset_state")
        }

    def set_position(self, name: str, position: int) -> None:
        self.db.execute("INSERT OR REPLACE INTO positions VALUES (?, ?)", (name, position))

    def position(self, name: str) -> int:
        row = self.db.execute("SELECT position FROM positions WHERE input = ?", (name,)).fetchone()
        return int(row[0]) if row else 0

    def counts(self) -> dict[str, int]:
        """Sizes for ``plantml-agent status`` when the agent is not running."""
        messages, size = self.outbox_depth()
        return {
            "outbox_messages": messages,
            "outbox_bytes": size,
            "outbox_dropped": self.meta("dropped"),
            "logged_predictions": self.db.execute("SELECT COUNT(*) FROM predictions").fetchone()[0],
            "rejected_rows_kept": self.db.execute("SELECT COUNT(*) FROM rejected").fetchone()[0],
            "assets": self.db.execute("SELECT COUNT(*) FROM asset_state").fetchone()[0],
        }
