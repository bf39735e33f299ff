"""Reading the store: versions, stages, approvals, outcomes, targets (plain dicts out)."""

from __future__ import annotations

import json
from typing import Any

import sqlalchemy as sa

from plantml.registry import schema as s
from plantml.registry.errors import NotFound, RegistryError


def parse_ref(ref: str) -> tuple[str, int]:
    """``"pump-failure:3"`` -> ("pump-failure", 3)."""
    model, sep, number = str(ref).rpartition(":")
    if not sep or not model or not number.isdigit():
        raise RegistryError(f"version {ref!r} is not MODEL:NUMBER (e.g. pump-failure:3)")
    return model, int(number)


def version_row(conn: sa.Connection, model: str, number: int) -> sa.Row:
    v, m = s.versions, s.models
    row = conn.execute(
        sa.select(v, m.c.name.label("model"))
        .join(m, m.c.id == v.c.model_id)
        .where(m.c.name == model, v.c.number == number)
    ).first()
    if row is None:
        known = conn.execute(sa.select(m.c.name)).scalars().all()
        raise NotFound(
            f"no version {model}:{number}; models: {', '.join(known) or 'none'} "
            "(`plantml-registry versions MODEL` lists versions)"
        )
    return row


def target_row(conn: sa.Connection, name: str) -> sa.Row:
    row = conn.execute(sa.select(s.targets).where(s.targets.c.name == name)).first()
    if row is None:
        known = conn.execute(sa.select(s.targets.c.name)).scalars().all()
        raise NotFound(
            f"no target {name!r}; targets: {', '.join(known) or 'none'} "
            "(declare one with `plantml-registry targets add`)"
        )
    return row


def open_stage(conn: sa.Connection, version_id: int, target_id: int) -> sa.Row | None:
    """The version's current stage row at the target (None: still a candidate there)."""
    st = s.stages
    return conn.execute(
        sa.select(st).where(
            st.c.version_id == version_id, st.c.target_id == target_id, st.c.left_at.is_(None)
        )
    ).first()


def reviews(conn: sa.Connection, version_id: int) -> list[dict[str, Any]]:
    a = s.approvals
    rows = conn.execute(sa.select(a).where(a.c.version_id == version_id).order_by(a.c.id)).all()
    return [
        {"reviewer": r.reviewer, "decision": r.decision, "comment": r.comment, "at": r.at}
        for r in rows
    ]


def latest_decisions(review_list: list[dict[str, Any]], author: str) -> dict[str, dict]:
    """Each reviewer's latest decision, the author's own excluded."""
    latest: dict[str, dict] = {}
    for r in review_list:
        if r["reviewer"] != author:
            latest[r["reviewer"]] = r
    return latest


def stage_history(conn: sa.Connection, version_id: int) -> list[dict[str, Any]]:
    st, t = s.stages, s.targets
    rows = conn.execute(
        sa.select(st, t.c.name.label("target"))
        .join(t, t.c.id == st.c.target_id)
        .where(st.c.version_id == version_id)
        .order_by(st.c.id)
    ).all()
    return [
        {
            "target": r.target,
            "stage": r.stage,
            "entered_at": r.entered_at,
            "entered_by": r.entered_by,
            "left_at": r.left_at,
            "reason": r.reason,
        }
        for r in rows
    ]


def outcomes(conn: sa.Connection, version_id: int) -> list[dict[str, Any]]:
    o, t = s.outcomes, s.targets
    rows = conn.execute(
        sa.select(o, t.c.name.label("target"))
        .join(t, t.c.id == o.c.target_id)
        .where(o.c.version_id == version_id)
        .order_by(o.c.id)
    ).all()
    return [
        {
            "target": r.target,
            "stage": r.stage,
            "passed": r.passed,
            "evidence": json.loads(r.evidence),
            "recorded_by": r.recorded_by,
            "at": r.at,
        }
        for r in rows
    ]


def signatures(conn: sa.Connection, version_id: int) -> list[dict[str, Any]]:
    g = s.signatures
    rows = conn.execute(sa.select(g).where(g.c.version_id == version_id).order_by(g.c.id)).all()
    return [
        {
            "key_id": r.key_id,
            "algorithm": "ed25519",
            "payload": json.loads(r.payload),
            "signature": r.signature,
        }
        for r in rows
    ]


def version_dict(conn: sa.Connection, row: sa.Row, full: bool = True) -> dict[str, Any]:
    """One version as a plain dict: identity, stages, reviews; ``full`` adds the record."""
    parent = None
    if row.parent_id is not None:
        p = conn.execute(
            sa.select(s.versions.c.number, s.models.c.name)
            .join(s.models, s.models.c.id == s.versions.c.model_id)
            .where(s.versions.c.id == row.parent_id)
        ).first()
        parent = f"{p.name}:{p.number}"
    out = {
        "ref": f"{row.model}:{row.number}",
        "model": row.model,
        "number": row.number,
        "manifest_sha256": row.manifest_sha256,
        "bundle_name": row.bundle_name,
        "bundle_version": row.bundle_version,
        "author": row.author,
        "registered_at": row.registered_at,
        "parent": parent,
        "tags": json.loads(row.tags),
        "stages": stage_history(conn, row.id),
        "reviews": reviews(conn, row.id),
        "outcomes": outcomes(conn, row.id),
    }
    out["current_stages"] = {h["target"]: h["stage"] for h in out["stages"] if h["left_at"] is None}
    if full:
        out["files"] = json.loads(row.files)
        out["record"] = json.loads(row.record)
        out["record_sha256"] = row.record_sha256
        out["signatures"] = signatures(conn, row.id)
    return out


def list_versions(conn: sa.Connection, model: str | None = None) -> list[dict[str, Any]]:
    v, m = s.versions, s.models
    query = sa.select(v, m.c.name.label("model")).join(m, m.c.id == v.c.model_id)
    if model:
        query = query.where(m.c.name == model)
    rows = conn.execute(query.order_by(m.c.name, v.c.number)).all()
    return [version_dict(conn, r, full=False) for r in rows]


def target_dict(row: sa.Row) -> dict[str, Any]:
    return {
        "name": row.name,
        "kind": row.kind,
        "conditions": json.loads(row.conditions),
        "description": row.description,
        "created_at": row.created_at,
        "created_by": row.created_by,
    }


def assignments(conn: sa.Connection, target: str, at: str | None = None) -> dict[str, dict]:
    """What ``target`` runs per model and stage, now (open rows) or at time ``at``."""
    t = target_row(conn, target)
    st, v, m = s.stages, s.versions, s.models
    query = (
        sa.select(st, v.c.number, v.c.manifest_sha256, m.c.name.label("model"))
        .join(v, v.c.id == st.c.version_id)
        .join(m, m.c.id == v.c.model_id)
        .where(st.c.target_id == t.id, st.c.stage != "archived")
    )
    if at is None:
        query = query.where(st.c.left_at.is_(None))
    else:
        query = query.where(
            st.c.entered_at <= at, sa.or_(st.c.left_at.is_(None), st.c.left_at > at)
        )
    out: dict[str, dict] = {}
    for r in conn.execute(query.order_by(st.c.id)).all():
        out.setdefault(r.model, {})[r.stage] = {
            "version": f"{r.model}:{r.number}",
            "number": r.number,
            "manifest_sha256": r.manifest_sha256,
            "since": r.entered_at,
            "by": r.entered_by,
        }
    return out
