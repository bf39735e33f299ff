"""The registry's tables (SQLAlchemy Core), the same on SQLite and PostgreSQL.

Times are ISO-8601 UTC strings with microseconds (``2026-05-01T12:00:00.000000+00:00``), so they
sort as text on every backend. JSON columns are text holding canonical JSON. Rows of
``versions``, ``approvals``, ``outcomes``, ``signatures`` and ``audit`` are never updated or
deleted by the registry (migration 2 adds database triggers that refuse it).
"""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()
TEXT = sa.Text
TIME = sa.String(40)

schema_version = sa.Table(
    "schema_version",
    metadata,
    sa.Column("version", sa.Integer, primary_key=True),
    sa.Column("description", TEXT, nullable=False),
    sa.Column("applied_at", TIME, nullable=False),
)

meta = sa.Table(  # one row 'lock': every state change locks it first (FOR UPDATE on PostgreSQL)
    "meta",
    metadata,
    sa.Column("key", sa.String(64), primary_key=True),
    sa.Column("value", TEXT, nullable=False),
)

users = sa.Table(
    "users",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(128), nullable=False, unique=True),
    sa.Column("roles", sa.String(256), nullable=False),  # space-separated, sorted
    sa.Column("created_at", TIME, nullable=False),
    sa.Column("created_by", sa.String(128), nullable=False),
    sa.Column("disabled", sa.Boolean, nullable=False, default=False),
)

tokens = sa.Table(
    "tokens",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id"), nullable=False),
    sa.Column("token_sha256", sa.String(64), nullable=False, unique=True),
    sa.Column("prefix", sa.String(16), nullable=False),  # shown in listings, not secret
    sa.Column("label", sa.String(256), nullable=False, default=""),
    sa.Column("created_at", TIME, nullable=False),
    sa.Column("expires_at", TIME, nullable=False),
    sa.Column("revoked_at", TIME, nullable=True),
)

models = sa.Table(
    "models",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(256), nullable=False, unique=True),
    sa.Column("created_at", TIME, nullable=False),
    sa.Column("created_by", sa.String(128), nullable=False),
)

versions = sa.Table(
    "versions",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("model_id", sa.Integer, sa.ForeignKey("models.id"), nullable=False),
    sa.Column("number", sa.Integer, nullable=False),
    sa.Column("manifest_sha256", sa.String(64), nullable=False),
    sa.Column("bundle_name", sa.String(256), nullable=False),
    sa.Column("bundle_version", sa.String(128), nullable=False),
    sa.Column("files", TEXT, nullable=False),  # {"manifest.json": sha, "model.onnx": sha, ...}
    sa.Column("author", sa.String(128), nullable=False),
    sa.Column("registered_at", TIME, nullable=False),
    sa.Column("parent_id", sa.Integer, sa.ForeignKey("versions.id"), nullable=True),
    sa.Column("tags", TEXT, nullable=False),
    sa.Column("record", TEXT, nullable=False),  # lineage, metrics, gate, export, wandb, card
    sa.Column("record_sha256", sa.String(64), nullable=False),
    sa.UniqueConstraint("model_id", "number", name="uq_versions_model_number"),
    sa.UniqueConstraint("model_id", "manifest_sha256", name="uq_versions_model_manifest"),
)

targets = sa.Table(
    "targets",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(128), nullable=False, unique=True),
    sa.Column("kind", sa.String(16), nullable=False),  # site | fleet
    sa.Column("conditions", TEXT, nullable=False),  # JSON list of operating conditions it runs
    sa.Column("description", TEXT, nullable=False, default=""),
    sa.Column("created_at", TIME, nullable=False),
    sa.Column("created_by", sa.String(128), nullable=False),
)

stages = sa.Table(  # one row per stay of a version in a stage at a target
    "stages",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("version_id", sa.Integer, sa.ForeignKey("versions.id"), nullable=False),
    sa.Column("target_id", sa.Integer, sa.ForeignKey("targets.id"), nullable=False),
    sa.Column("stage", sa.String(16), nullable=False),
    sa.Column("entered_at", TIME, nullable=False),
    sa.Column("entered_by", sa.String(128), nullable=False),
    sa.Column("left_at", TIME, nullable=True),
    sa.Column("reason", TEXT, nullable=False, default=""),
    sa.Index("ix_stages_target_open", "target_id", "left_at"),
)

approvals = sa.Table(
    "approvals",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("version_id", sa.Integer, sa.ForeignKey("versions.id"), nullable=False),
    sa.Column("reviewer", sa.String(128), nullable=False),
    sa.Column("decision", sa.String(16), nullable=False),  # approve | reject
    sa.Column("comment", TEXT, nullable=False, default=""),
    sa.Column("at", TIME, nullable=False),
)

outcomes = sa.Table(  # shadow / canary results, recorded by the rollout tooling
    "outcomes",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("version_id", sa.Integer, sa.ForeignKey("versions.id"), nullable=False),
    sa.Column("target_id", sa.Integer, sa.ForeignKey("targets.id"), nullable=False),
    sa.Column("stage", sa.String(16), nullable=False),
    sa.Column("passed", sa.Boolean, nullable=False),
    sa.Column("evidence", TEXT, nullable=False),
    sa.Column("recorded_by", sa.String(128), nullable=False),
    sa.Column("at", TIME, nullable=False),
)

signing_keys = sa.Table(  # public halves only: private keys never enter the store
    "signing_keys",
    metadata,
    sa.Column("key_id", sa.String(16), primary_key=True),
    sa.Column("public_pem", TEXT, nullable=False),
    sa.Column("created_at", TIME, nullable=False),
    sa.Column("created_by", sa.String(128), nullable=False),
    sa.Column("retired_at", TIME, nullable=True),
)

signatures = sa.Table(
    "signatures",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("version_id", sa.Integer, sa.ForeignKey("versions.id"), nullable=False),
    sa.Column("key_id", sa.String(16), nullable=False),
    sa.Column("payload", TEXT, nullable=False),
    sa.Column("signature", TEXT, nullable=False),
    sa.Column("at", TIME, nullable=False),
)

devices = sa.Table(  # the last report of each device
    "devices",
    metadata,
    sa.Column("device_id", sa.String(128), primary_key=True),
    sa.Column("target_id", sa.Integer, sa.ForeignKey("targets.id"), nullable=False),
    sa.Column("model", sa.String(256), nullable=True),
    sa.Column("version_number", sa.Integer, nullable=True),
    sa.Column("manifest_sha256", sa.String(64), nullable=True),
    sa.Column("state", sa.String(32), nullable=False),
    sa.Column("report", TEXT, nullable=False),
    sa.Column("reported_by", sa.String(128), nullable=False),
    sa.Column("last_seen", TIME, nullable=False),
)

deployments = sa.Table(  # every change of what a device reports it runs
    "deployments",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("device_id", sa.String(128), nullable=False),
    sa.Column("target_id", sa.Integer, sa.ForeignKey("targets.id"), nullable=False),
    sa.Column("model", sa.String(256), nullable=True),
    sa.Column("version_number", sa.Integer, nullable=True),
    sa.Column("manifest_sha256", sa.String(64), nullable=True),
    sa.Column("state", sa.String(32), nullable=False),
    sa.Column("at", TIME, nullable=False),
    sa.Index("ix_deployments_target_at", "target_id", "at"),
)

audit = sa.Table(
    "audit",
    metadata,
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("at", TIME, nullable=False),
    sa.Column("actor", sa.String(128), nullable=False),
    sa.Column("action", sa.String(64), nullable=False),
    sa.Column("subject", sa.String(512), nullable=False),
    sa.Column("before", TEXT, nullable=False),
    sa.Column("after", TEXT, nullable=False),
    sa.Column("prev_hash", sa.String(64), nullable=False),
    sa.Column("entry_hash", sa.String(64), nullable=False),
    sa.Column("key_id", sa.String(16), nullable=False),
    sa.Column("signature", TEXT, nullable=False),
)

APPEND_ONLY = ("versions", "approvals", "outcomes", "signatures", "audit")
