"""``history --target SITE --at TIME``: what ran there then, where it came from, who approved it."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from plantml.registry import queries
from plantml.registry import schema as s
from plantml.registry.timefmt import iso, parse_time


def history(registry, target: str, at: str) -> dict[str, Any]:
    """The assignments of ``target`` at time ``at`` with lineage, approvals and device reports."""
    when = iso(parse_time(at))
    with registry.engine.connect() as conn:
        t = queries.target_row(conn, target)
        assigned = queries.assignments(conn, target, when)
        out: dict[str, Any] = {"target": target, "at": when, "models": {}, "devices": []}
        for model, stages in assigned.items():
            for stage, entry in stages.items():
                row = queries.version_row(conn, model, entry["number"])
                version = queries.version_dict(conn, row)
                lineage = version["record"].get("lineage") or {}
                config = version["record"].get("config") or {}
                reviews = [r for r in version["reviews"] if r["at"] <= when]
                latest = queries.latest_decisions(reviews, version["author"])
                out["models"].setdefault(model, {})[stage] = {
                    **entry,
                    "author": version["author"],
                    "registered_at": version["registered_at"],
                    "data_fingerprint": lineage.get("data_fingerprint"),
                    "git_commit": (lineage.get("git") or {}).get("commit"),
                    "training_run": lineage.get("training_run"),
                    "run_dir": lineage.get("run_dir"),
                    "recipe": lineage.get("recipe"),
                    "experiment": config.get("run_name"),
                    "data": (config.get("data") or {}).get("_target_")
                    or (config.get("data") or {}).get("source"),
                    "approved_by": [
                        {"reviewer": r, "at": d["at"], "comment": d["comment"]}
                        for r, d in sorted(latest.items())
                        if d["decision"] == "approve"
                    ],
                }
        d = s.deployments
        last = (
            sa.select(d.c.device_id, sa.func.max(d.c.id).label("id"))
            .where(d.c.target_id == t.id, d.c.at <= when)
            .group_by(d.c.device_id)
            .subquery()
        )
        rows = conn.execute(
            sa.select(d).join(last, last.c.id == d.c.id).order_by(d.c.device_id)
        ).all()
        out["devices"] = [
            {
                "device_id": r.device_id,
                "state": r.state,
                "since": r.at,
                "version": None if r.model is None else f"{r.model}:{r.version_number}",
                "manifest_sha256": r.manifest_sha256,
            }
            for r in rows
        ]
    return out
