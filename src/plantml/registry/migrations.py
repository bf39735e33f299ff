"""Schema versions, Alembic-style: ordered migrations and a ``schema_version`` table.

Why not Alembic itself: the registry has one small schema that must upgrade in place on
SQLite files and PostgreSQL servers alike, from the CLI and the server, with no migration
folder or ``env.py`` to install. An ordered list of functions, each run once in its own
transaction and recorded in ``schema_version``, gives the same guarantees (upgrade from any
older version; refuse a database newer than the code) in one module. Add a migration by
appending to :data:`MIGRATIONS`; never edit one that has shipped.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import sqlalchemy as sa

from plantml.registry import schema
from plantml.registry.errors import RegistryError

_V1_TABLES = [
    schema.meta,
    schema.users,
    schema.tokens,
    schema.models,
    schema.versions,
    schema.targets,
    schema.stages,
    schema.approvals,
    schema.outcomes,
    schema.signing_keys,
    schema.signatures,
    schema.devices,
    schema.deployments,
    schema.audit,
]


def _v1_tables(conn: sa.Connection) -> None:
    schema.metadata.create_all(conn, tables=_V1_TABLES)
    conn.execute(schema.meta.insert().values(key="lock", value="registry write lock"))


def _v2_append_only(conn: sa.Connection) -> None:
    """Database triggers that refuse UPDATE and DELETE on the append-only tables."""
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql(
            "CREATE OR REPLACE FUNCTION plantml_append_only() RETURNS trigger AS $$ BEGIN "
            "RAISE EXCEPTION 'table %% is append-only in the plantml registry', TG_TABLE_NAME; "
            "END; $$ LANGUAGE plpgsql"
        )
        for table in schema.APPEND_ONLY:
            conn.exec_driver_sql(
                f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
                "FOR EACH ROW EXECUTE FUNCTION plantml_append_only()"
            )
        return
    for table in schema.APPEND_ONLY:
        for event in ("UPDATE", "DELETE"):
            conn.exec_driver_sql(
                f"CREATE TRIGGER {table}_no_{event.lower()} BEFORE {event} ON {table} BEGIN "
                f"SELECT RAISE(ABORT, 'table {table} is append-only in the plantml registry'); END"
            )


MIGRATIONS: list[tuple[str, Callable[[sa.Connection], None]]] = [
    ("tables", _v1_tables),
    ("append-only triggers on versions, approvals, outcomes, signatures, audit", _v2_append_only),
]
LATEST = len(MIGRATIONS)


def current_version(conn: sa.Connection) -> int:
    """The schema version of the database (0 when it has no registry tables)."""
    if not sa.inspect(conn).has_table("schema_version"):
        return 0
    value = conn.execute(sa.select(sa.func.max(schema.schema_version.c.version))).scalar()
    return int(value or 0)


def upgrade(engine: sa.Engine) -> list[int]:
    """Apply every pending migration, each in its own transaction; returns those applied.

    Concurrent upgrades are serialized (an advisory lock on PostgreSQL, the write lock on
    SQLite). A database newer than this code is refused.
    """
    applied = []
    while True:
        with engine.connect().execution_options(plantml_write=True) as conn, conn.begin():
            if conn.dialect.name == "postgresql":
                conn.exec_driver_sql("SELECT pg_advisory_xact_lock(7340211)")
            schema.schema_version.create(conn, checkfirst=True)
            version = current_version(conn)
            if version > LATEST:
                raise RegistryError(
                    f"the registry database is at schema version {version}, newer than this "
                    f"plantml understands ({LATEST}); upgrade plantml"
                )
            if version == LATEST:
                return applied
            description, migrate = MIGRATIONS[version]
            migrate(conn)
            conn.execute(
                schema.schema_version.insert().values(
                    version=version + 1,
                    description=description,
                    applied_at=datetime.now(UTC).isoformat(timespec="microseconds"),
                )
            )
            applied.append(version + 1)
