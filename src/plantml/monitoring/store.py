"""The monitoring store: predictions, summaries (with sketches), events, alerts, monitor state.

Any SQLAlchemy URL: a plain path or ``sqlite:///monitor.db`` (the default), or
``postgresql://user@host/db`` (psycopg 3) for a team. The schema is versioned
the Alembic way: a ``schema_version`` table records the migrations applied, and
:func:`migrate` applies the missing ones in order, in one transaction (under an
advisory lock on PostgreSQL, so that ``plantml-ingest`` and ``plantml-monitor``
starting together do not race). A store written by a newer plantml is refused.

Messages keep the agent's ``id`` (``msg_id``): a message delivered twice (MQTT
QoS 1, a replayed outbox) is stored once.
"""

from __future__ import annotations

import json
import time as _time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import (
    Column,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    create_engine,
    func,
    insert,
    select,
    text,
)
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import ArgumentError, OperationalError, SQLAlchemyError

from plantml.monitoring.errors import StoreError
from plantml.monitoring.labels import EventLog, PredictionLog

metadata = MetaData()
schema_version = Table(
    "schema_version",
    metadata,
    Column("version", Integer, primary_key=True),
    Column("description", String(200), nullable=False),
    Column("applied", Float, nullable=False),
)
predictions = Table(
    "predictions",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("msg_id", String(64), unique=True),
    Column("site", String(100)),
    Column("asset", String(200), nullable=False),
    Column("time", Float, nullable=False),
    Column("time_text", String(64)),
    Column("condition", String(200)),
    Column("value", Float),
    Column("alarm", Integer),
    Column("model", String(200)),
    Column("version", String(100)),
    Column("bundle_sha", String(64)),
    Column("received", Float, nullable=False),
    Index("ix_predictions_bundle_time", "bundle_sha", "time"),
)
summaries = Table(
    "summaries",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("msg_id", String(64), unique=True),
    Column("site", String(100)),
    Column("agent", String(200)),
    Column("model", String(200)),
    Column("version", String(100)),
    Column("bundle_sha", String(64)),
    Column("profile_sha", String(64)),
    Column("period_start", Float),
    Column("period_end", Float, nullable=False),
    Column("rows", Integer),
    Column("sketch", Text),
    Column("body", Text),
    Column("received", Float, nullable=False),
    Index("ix_summaries_bundle_end", "bundle_sha", "period_end"),
)
events = Table(
    "events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("msg_id", String(64), unique=True),
    Column("site", String(100)),
    Column("asset", String(200), nullable=False),
    Column("time", Float, nullable=False),
    Column("kind", String(40), nullable=False),
    Column("end_time", Float),
    Column("note", Text),
    Column("source", String(200)),
    Column("received", Float, nullable=False),
    Index("ix_events_asset_time", "asset", "time"),
)
alerts = Table(
    "alerts",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("bundle_sha", String(64)),
    Column("rule", String(200), nullable=False),
    Column("severity", String(20), nullable=False),
    Column("condition", String(200)),
    Column("signal", String(200)),
    Column("status", String(20), nullable=False),
    Column("since", Float),
    Column("opened", Float),
    Column("resolved", Float),
    Column("payload", Text, nullable=False),
    Column("created", Float, nullable=False),
)
monitor_state = Table(
    "monitor_state",
    metadata,
    Column("bundle_sha", String(64), primary_key=True),
    Column("state", Text, nullable=False),
    Column("summary_watermark", Integer, nullable=False),
    Column("prediction_watermark", Integer, nullable=False),
    Column("updated", Float, nullable=False),
)


def _create(*tables: Table) -> Callable[[Connection], None]:
    def step(conn: Connection) -> None:
        for table in tables:
            table.create(conn)

    return step


# (version, description, step): append new migrations, never edit applied ones
MIGRATIONS: list[tuple[int, str, Callable[[Connection], None]]] = [
    (1, "predictions, summaries and events", _create(predictions, summaries, events)),
    (2, "alerts and monitor state", _create(alerts, monitor_state)),
]
LATEST = MIGRATIONS[-1][0]


def normalize_url(url: str | Path) -> str:
    """A plain path becomes ``sqlite:///path``; ``postgresql://`` uses psycopg 3."""
    text_url = str(url)
    if "://" not in text_url:
        return f"sqlite:///{Path(text_url).expanduser()}"
    for prefix in ("postgresql://", "postgres://"):
        if text_url.startswith(prefix):
            return "postgresql+psycopg://" + text_url[len(prefix) :]
    return text_url


def current_version(conn: Connection) -> int:
    """The schema version of the store (0 for an empty database)."""
    if not conn.dialect.has_table(conn, "schema_version"):
        return 0
    return int(conn.execute(select(func.max(schema_version.c.version))).scalar() or 0)


def migrate(engine: Engine, target: int | None = None) -> int:
    """Apply the missing migrations up to ``target`` (default: all); returns the version."""
    target = LATEST if target is None else target
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(812730001)"))
        if not conn.dialect.has_table(conn, "schema_version"):
            schema_version.create(conn)
        version = current_version(conn)
        if version > LATEST:
            raise StoreError(
                f"the store has schema version {version}, newer than this plantml knows "
                f"({LATEST}); upgrade plantml"
            )
        for number, description, step in MIGRATIONS:
            if version < number <= target:
                step(conn)
                conn.execute(
                    insert(schema_version).values(
                        version=number, description=description, applied=_time.time()
                    )
                )
                version = number
    return version


def _json(value: Any) -> str | None:
    return None if value is None else json.dumps(value, separators=(",", ":"), default=str)


class Store:
    """A monitoring store at a SQLAlchemy URL (created and migrated on open)."""

    def __init__(self, url: str | Path, migrate_schema: bool = True):
        self.url = normalize_url(url)
        try:
            self.engine = create_engine(self.url, future=True, pool_pre_ping=True)
            self.version = migrate(self.engine) if migrate_schema else None
        except (ArgumentError, OperationalError, SQLAlchemyError) as exc:
            if isinstance(exc, StoreError):
                raise
            raise StoreError(
                f"cannot open the store {self.safe_url} ({type(exc).__name__}: "
                f"{str(exc).splitlines()[0]}); check the URL (sqlite:///file.db or "
                "postgresql://user@host:port/db) and that the server is reachable"
            ) from None

    @property
    def safe_url(self) -> str:
        """The URL without its password, for messages."""
        try:
            from sqlalchemy.engine import make_url

            return make_url(self.url).render_as_string(hide_password=True)
        except ArgumentError:
            return self.url

    def close(self) -> None:
        self.engine.dispose()

    def _insert(self, table: Table, rows: list[dict[str, Any]]) -> int:
        """Insert rows, skipping those whose msg_id is already stored; returns rows added."""
        if not rows:
            return 0
        now = _time.time()
        for r in rows:
            r.setdefault("received", now)
        dialect = self.engine.dialect.name
        if dialect in ("sqlite", "postgresql"):
            module = __import__(f"sqlalchemy.dialects.{dialect}", fromlist=["insert"])
            stmt = module.insert(table).on_conflict_do_nothing(index_elements=["msg_id"])
        else:
            stmt = insert(table)
        with self.engine.begin() as conn:
            before = conn.execute(select(func.count()).select_from(table)).scalar()
            conn.execute(stmt, rows)
            after = conn.execute(select(func.count()).select_from(table)).scalar()
        return int(after - before)

    def add_predictions(self, rows: Iterable[Mapping[str, Any]]) -> int:
        return self._insert(predictions, [dict(r) for r in rows])

    def add_events(self, rows: Iterable[Mapping[str, Any]]) -> int:
        return self._insert(events, [dict(r) for r in rows])

    def add_summaries(self, rows: Iterable[Mapping[str, Any]]) -> int:
        out = []
        for r in rows:
            r = dict(r)
            r["sketch"] = _json(r.get("sketch"))
            r["body"] = _json(r.get("body"))
            out.append(r)
        return self._insert(summaries, out)

    # --- reading ---------------------------------------------------------------------------------

    def _where(self, table: Table, bundle_sha, since, until, time_col: str, after_id=None):
        stmt = select(table)
        if bundle_sha:
            stmt = stmt.where(table.c.bundle_sha == bundle_sha)
        if since is not None:
            stmt = stmt.where(table.c[time_col] >= since)
        if until is not None:
            stmt = stmt.where(table.c[time_col] < until)
        if after_id is not None:
            stmt = stmt.where(table.c.id > after_id)
        return stmt.order_by(table.c[time_col], table.c.id)

    def prediction_log(
        self, bundle_sha: str | None = None, since=None, until=None, after_id: int | None = None
    ) -> tuple[PredictionLog, int]:
        """Stored predictions as a :class:`PredictionLog`, and the largest id read."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                self._where(predictions, bundle_sha, since, until, "time", after_id)
            ).all()
        return prediction_log_from_records([r._mapping for r in rows]), max(
            (r.id for r in rows), default=after_id or 0
        )

    def event_log(self, assets: Iterable[str] | None = None) -> EventLog:
        stmt = select(events).order_by(events.c.time)
        if assets is not None:
            stmt = stmt.where(events.c.asset.in_(list(assets)))
        with self.engine.connect() as conn:
            rows = [r._mapping for r in conn.execute(stmt).all()]
        return EventLog(
            np.array([r["asset"] for r in rows], dtype=object),
            np.array([r["time"] for r in rows], dtype=np.float64),
            np.array([r["kind"] for r in rows], dtype=object),
            np.array([np.nan if r["end_time"] is None else r["end_time"] for r in rows], float),
        )

    def summary_records(
        self, bundle_sha: str | None = None, since=None, until=None, after_id: int | None = None
    ) -> list[dict[str, Any]]:
        """Stored summaries (``sketch`` parsed), oldest period first."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                self._where(summaries, bundle_sha, since, until, "period_end", after_id)
            ).all()
        out = []
        for r in rows:
            d = dict(r._mapping)
            d["sketch"] = None if d["sketch"] is None else json.loads(d["sketch"])
            out.append(d)
        return out

    def counts(self) -> dict[str, int]:
        with self.engine.connect() as conn:
            return {
                t.name: int(conn.execute(select(func.count()).select_from(t)).scalar())
                for t in (predictions, summaries, events, alerts)
            }

    # --- alerts and monitor state ----------------------------------------------------------------

    def save_alerts(self, bundle_sha: str, items: Iterable[Mapping[str, Any]]) -> None:
        rows = [
            {
                "bundle_sha": bundle_sha,
                "rule": a["rule"],
                "severity": a["severity"],
                "condition": a.get("condition"),
                "signal": a.get("signal"),
                "status": a["status"],
                "since": _float(a.get("since")),
                "opened": _float(a.get("opened")),
                "resolved": _float(a.get("resolved")),
                "payload": _json(a),
                "created": _time.time(),
            }
            for a in items
        ]
        if rows:
            with self.engine.begin() as conn:
                conn.execute(insert(alerts), rows)

    def alert_records(self, bundle_sha: str | None = None) -> list[dict[str, Any]]:
        stmt = select(alerts).order_by(alerts.c.id)
        if bundle_sha:
            stmt = stmt.where(alerts.c.bundle_sha == bundle_sha)
        with self.engine.connect() as conn:
            return [json.loads(r.payload) for r in conn.execute(stmt).all()]

    def load_state(self, bundle_sha: str) -> dict[str, Any] | None:
        with self.engine.connect() as conn:
            row = conn.execute(
                select(monitor_state).where(monitor_state.c.bundle_sha == bundle_sha)
            ).first()
        if row is None:
            return None
        return {
            "state": json.loads(row.state),
            "summary_watermark": row.summary_watermark,
            "prediction_watermark": row.prediction_watermark,
        }

    def save_state(
        self, bundle_sha: str, state: Mapping[str, Any], summary_mark: int, prediction_mark: int
    ) -> None:
        values = {
            "state": _json(state),
            "summary_watermark": int(summary_mark),
            "prediction_watermark": int(prediction_mark),
            "updated": _time.time(),
        }
        with self.engine.begin() as conn:
            done = conn.execute(
                monitor_state.update()
                .where(monitor_state.c.bundle_sha == bundle_sha)
                .values(**values)
            ).rowcount
            if not done:
                conn.execute(insert(monitor_state).values(bundle_sha=bundle_sha, **values))


def _float(value: Any) -> float | None:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    return v if np.isfinite(v) else None


def prediction_log_from_records(rows: list[Mapping[str, Any]]) -> PredictionLog:
    """Records (asset, time, condition, value, alarm) as a :class:`PredictionLog`."""
    return PredictionLog(
        asset=np.array([str(r["asset"]) for r in rows], dtype=object),
        time=np.array([r["time"] for r in rows], dtype=np.float64),
        condition=np.array([r.get("condition") or "unseen" for r in rows], dtype=object),
        value=np.array([np.nan if r["value"] is None else r["value"] for r in rows], float),
        alarm=np.array([np.nan if r.get("alarm") is None else r["alarm"] for r in rows], float),
    )
