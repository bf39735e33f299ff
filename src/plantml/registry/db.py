"""Connecting to the registry store: SQLite file by default, PostgreSQL by URL.

Every state change runs in :func:`write_transaction`, which serializes writers at the
database: ``BEGIN IMMEDIATE`` on SQLite (the write lock is taken before anything is read)
and ``SELECT ... FOR UPDATE`` of the ``meta`` lock row on PostgreSQL. Inside it a version
number, a stage change and the audit entry that records it are decided from one consistent
state, so two processes never allocate the same number or fork the audit chain.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy import event

from plantml.registry import schema
from plantml.registry.errors import RegistryError

HOME_ENV = "PLANTML_REGISTRY_HOME"
URL_ENV = "PLANTML_REGISTRY_URL"
DEFAULT_HOME = Path("~/.plantml/registry")


def registry_home(home: str | Path | None = None) -> Path:
    """``--home``, else ``$PLANTML_REGISTRY_HOME``, else ``~/.plantml/registry``."""
    return Path(home or os.environ.get(HOME_ENV) or DEFAULT_HOME).expanduser()


def store_url(home: Path, url: str | None = None) -> str:
    """``--url``, else ``$PLANTML_REGISTRY_URL``, else the SQLite file ``HOME/registry.db``."""
    return url or os.environ.get(URL_ENV) or f"sqlite:///{home / 'registry.db'}"


def _sqlite_events(engine: sa.Engine) -> None:
    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection, _record) -> None:
        dbapi_connection.isolation_level = None  # SQLAlchemy emits BEGIN itself (below)
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=60000")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(conn: sa.Connection) -> None:
        write = conn.get_execution_options().get("plantml_write")
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")


def make_engine(url: str) -> sa.Engine:
    """An engine for ``url`` (``sqlite:///path`` or ``postgresql+psycopg://...``)."""
    try:
        parsed = sa.engine.make_url(url)
    except sa.exc.ArgumentError:
        raise RegistryError(
            f"registry store URL {url!r} is not a SQLAlchemy URL; use sqlite:///PATH or "
            "postgresql+psycopg://USER@HOST:PORT/DB"
        ) from None
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(parsed, connect_args={"timeout": 60})
        _sqlite_events(engine)
        return engine
    if parsed.get_backend_name() == "postgresql":
        if parsed.drivername == "postgresql":
            parsed = parsed.set(drivername="postgresql+psycopg")
        return sa.create_engine(parsed, pool_pre_ping=True)
    raise RegistryError(
        f"registry store {parsed.get_backend_name()!r} is not supported; use SQLite or PostgreSQL"
    )


@contextmanager
def write_transaction(engine: sa.Engine) -> Iterator[sa.Connection]:
    """One serialized read-write transaction (committed on success, rolled back on error)."""
    with engine.connect().execution_options(plantml_write=True) as conn, conn.begin():
        if conn.dialect.name == "postgresql":
            conn.execute(
                sa.select(schema.meta.c.value).where(schema.meta.c.key == "lock").with_for_update()
            )
        yield conn


@contextmanager
def read_transaction(engine: sa.Engine) -> Iterator[sa.Connection]:
    """A read-only transaction (one consistent snapshot on SQLite WAL and PostgreSQL)."""
    with engine.connect() as conn, conn.begin():
        yield conn
