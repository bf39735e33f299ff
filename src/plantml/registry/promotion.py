"""The promotion rules: may this version enter this stage at this target now?

:func:`promotion_problems` returns every unmet rule as ``(code, message)``; the service
refuses with all of them (the first code names the refusal). Stages run
``candidate -> shadow -> canary -> production -> archived``; a version may be archived from
anywhere, and an archived version may come back (a rollback) only to a stage it held at that
target before, which skips the period and outcome rules it already met but not the gate or
the approvals.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta

import sqlalchemy as sa

from plantml.registry import schema as s
from plantml.registry.gating import gate_problems
from plantml.registry.policy import STAGES, Policy
from plantml.registry.queries import latest_decisions, reviews
from plantml.registry.timefmt import iso, parse_time

Problem = tuple[str, str]


def _held_before(conn: sa.Connection, version_id: int, target_id: int, stage: str) -> bool:
    st = s.stages
    return (
        conn.execute(
            sa.select(st.c.id).where(
                st.c.version_id == version_id, st.c.target_id == target_id, st.c.stage == stage
            )
        ).first()
        is not None
    )


def _transition(
    conn, policy: Policy, version: sa.Row, target: sa.Row, current: str, stage: str
) -> tuple[list[Problem], bool]:
    """Problems with the step itself, and whether it is a rollback."""
    ref, where = f"{version.model}:{version.number}", target.name
    if stage == current:
        return [("same_stage", f"{ref} is already {stage} at {where}")], False
    if current == "archived":
        if _held_before(conn, version.id, target.id, stage):
            return [], True
        return [
            (
                "archived",
                f"{ref} is archived at {where} and never was {stage} there; an archived version "
                "only returns (rollback) to a stage it held before",
            )
        ], False
    step = STAGES.index(stage) - STAGES.index(current)
    if step != 1 and not policy.allow_skip:
        missing = STAGES[STAGES.index(current) + 1]
        if step < 0:
            return [
                (
                    "backwards",
                    f"{ref} is {current} at {where}; it cannot go back to {stage} (archive it and "
                    "promote another version)",
                )
            ], False
        return [
            (
                "skipped_stage",
                f"{ref} is {current} at {where} and must be {missing} there before {stage} "
                f"(policy {policy.source}: transitions.allow_skip = false)",
            )
        ], False
    return [], False


def _period(
    policy: Policy,
    version: sa.Row,
    target: sa.Row,
    current: str,
    entered: str,
    stage: str,
    now: datetime,
) -> list[Problem]:
    hours = policy.stages[stage].min_hours_in_previous
    if hours <= 0:
        return []
    spent = (now - parse_time(entered)).total_seconds() / 3600
    if spent >= hours:
        return []
    ready = parse_time(entered) + timedelta(hours=hours)
    return [
        (
            "period_not_elapsed",
            f"{version.model}:{version.number} has been {current} at {target.name} for "
            f"{spent:.1f} h; entering {stage} needs {hours:g} h (policy stages.{stage}."
            f"min_hours_in_previous); possible from {iso(ready)}",
        )
    ]


def _outcome(
    conn, version: sa.Row, target: sa.Row, current: str, entered: str, stage: str
) -> list[Problem]:
    o = s.outcomes
    row = conn.execute(
        sa.select(o)
        .where(
            o.c.version_id == version.id,
            o.c.target_id == target.id,
            o.c.stage == current,
            o.c.at >= entered,
        )
        .order_by(o.c.id.desc())
        .limit(1)
    ).first()
    ref = f"{version.model}:{version.number}"
    if row is None:
        return [
            (
                "missing_outcome",
                f"no {current} outcome is recorded for {ref} at {target.name}; entering {stage} "
                f"needs a passed one (policy stages.{stage}.outcome_required; the rollout tooling "
                "records it with record_rollout_outcome)",
            )
        ]
    if not row.passed:
        evidence = json.loads(row.evidence)
        return [
            (
                "failed_outcome",
                f"the latest {current} outcome of {ref} at {target.name} failed ({row.at}, by "
                f"{row.recorded_by}: {json.dumps(evidence)[:200]})",
            )
        ]
    return []


def _approvals(conn, policy: Policy, version: sa.Row, stage: str) -> list[Problem]:
    needed = policy.stages[stage].approvals
    if needed <= 0:
        return []
    latest = latest_decisions(reviews(conn, version.id), version.author)
    ref = f"{version.model}:{version.number}"
    rejected = sorted(r for r, d in latest.items() if d["decision"] == "reject")
    if rejected:
        return [
            (
                "rejected",
                f"{ref} was rejected by {', '.join(rejected)} (their latest decision); a new "
                "approval from them is needed",
            )
        ]
    approved = sorted(r for r, d in latest.items() if d["decision"] == "approve")
    if len(approved) < needed:
        who = f" ({', '.join(approved)})" if approved else ""
        return [
            (
                "missing_approvals",
                f"{ref} has {len(approved)} of the {needed} approvals that {stage} needs{who} "
                f"(policy stages.{stage}.approvals; reviewers other than the author "
                f"{version.author})",
            )
        ]
    return []


def promotion_problems(
    conn: sa.Connection,
    policy: Policy,
    version: sa.Row,
    target: sa.Row,
    current: sa.Row | None,
    stage: str,
    now: datetime,
) -> list[Problem]:
    """Every rule that keeps ``version`` from entering ``stage`` at ``target`` now."""
    current_stage = current.stage if current is not None else "candidate"
    entered = current.entered_at if current is not None else version.registered_at
    if stage == "archived":
        return (
            []
            if current_stage != "archived"
            else [
                (
                    "same_stage",
                    f"{version.model}:{version.number} is already archived at {target.name}",
                )
            ]
        )
    problems, rollback = _transition(conn, policy, version, target, current_stage, stage)
    if problems:
        return problems
    rule = policy.stages[stage]
    if rule.gate:
        record = json.loads(version.record)
        for text in gate_problems(record.get("gate"), json.loads(target.conditions)):
            code = (
                "missing_gate"
                if record.get("gate") is None or "not evaluated" in text
                else "gate_failed"
            )
            problems.append((code, text))
    if not rollback:
        problems += _period(policy, version, target, current_stage, entered, stage, now)
        if rule.outcome_required:
            problems += _outcome(conn, version, target, current_stage, entered, stage)
    problems += _approvals(conn, policy, version, stage)
    return problems
