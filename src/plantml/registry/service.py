"""The registry's library layer: every rule is enforced here, whoever calls (CLI, HTTP, tests).

Each state-changing method takes the caller's API token, authenticates it, checks the role
(:mod:`plantml.registry.policy`) and the rules inside one serialized write transaction
(:func:`plantml.registry.db.write_transaction`), and appends a signed audit entry in the same
transaction. A refusal rolls the transaction back, is recorded in the audit trail as a
``refused`` entry in a transaction of its own, and is raised as :class:`Refused` with the
rule's code and message.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from plantml.edge.signature import canonical_json, load_trusted_keys
from plantml.registry import audit, identity, migrations, queries
from plantml.registry import schema as s
from plantml.registry.artifacts import LocalArtifactStore
from plantml.registry.cards import model_card
from plantml.registry.db import make_engine, registry_home, store_url, write_transaction
from plantml.registry.errors import Refused, RegistryError
from plantml.registry.identity import Actor
from plantml.registry.intake import read_registration
from plantml.registry.policy import ACTIVE_STAGES, STAGES, Policy, load_policy
from plantml.registry.promotion import promotion_problems
from plantml.registry.signing import KEY_ENV, Signer, generate_key, load_key
from plantml.registry.timefmt import iso, utcnow

KEY_FILE = Path("keys") / "registry.key"
TRUSTED_DIR = Path("keys") / "trusted"
STATE_PATTERN = "abcdefghijklmnopqrstuvwxyz_"


class Registry:
    """A registry store (SQLAlchemy URL), its artifact folder, signing key and policy.

    Open one with :meth:`open` (an initialized store) or :meth:`init` (a new one).
    ``clock`` returns the current UTC time (tests move it forward).
    """

    def __init__(
        self,
        engine: sa.Engine,
        home: Path,
        policy: Policy,
        key_path: Path,
        artifacts: LocalArtifactStore | None = None,
        clock: Callable[[], datetime] = utcnow,
    ):
        self.engine, self.home, self.policy, self.key_path = engine, home, policy, key_path
        self.artifacts = artifacts or LocalArtifactStore(home / "artifacts")
        self.clock = clock
        self._signer: Signer | None = None

    # --- opening ---------------------------------------------------------------------------

    @classmethod
    def open(
        cls,
        home: str | Path | None = None,
        url: str | None = None,
        policy: str | Path | Policy | None = None,
        signing_key: str | Path | None = None,
        artifacts: str | Path | None = None,
        clock: Callable[[], datetime] = utcnow,
        upgrade: bool = False,
    ) -> Registry:
        """An existing registry (``upgrade``: apply pending schema migrations first)."""
        import os

        root = registry_home(home)
        engine = make_engine(store_url(root, url))
        if upgrade:
            migrations.upgrade(engine)
        with engine.connect() as conn:
            version = migrations.current_version(conn)
        if version == 0:
            raise RegistryError(
                f"no registry at {engine.url.render_as_string(hide_password=True)}; create one "
                "with `plantml-registry init --admin NAME`"
            )
        if version != migrations.LATEST:
            raise RegistryError(
                f"the registry schema is at version {version}, this plantml uses "
                f"{migrations.LATEST}; run `plantml-registry upgrade`"
            )
        pol = policy if isinstance(policy, Policy) else load_policy(policy, root)
        key = Path(signing_key or os.environ.get(KEY_ENV) or root / KEY_FILE)
        store = LocalArtifactStore(artifacts) if artifacts else None
        return cls(engine, root, pol, key, store, clock)

    @classmethod
    def init(
        cls,
        admin: str,
        home: str | Path | None = None,
        url: str | None = None,
        token_days: float = 30.0,
        **kwargs: Any,
    ) -> tuple[Registry, str]:
        """Create the schema, a signing key (when there is none) and the first admin; returns
        the registry and the admin's token (shown once)."""
        root = registry_home(home)
        root.mkdir(parents=True, exist_ok=True)
        migrations.upgrade(make_engine(store_url(root, url)))
        reg = cls.open(root, url, **kwargs)
        if not reg.key_path.exists():
            generate_key(reg.key_path)
        signer = reg.signer
        with write_transaction(reg.engine) as conn:
            if conn.execute(sa.select(sa.func.count()).select_from(s.users)).scalar():
                raise RegistryError(
                    "this registry already has users; issue tokens with "
                    "`plantml-registry tokens issue` instead of init"
                )
            now = reg.clock()
            identity.create_user(conn, admin, ["admin"], "init", now)
            token, prefix, expires = identity.issue_token(conn, admin, now, token_days, "init")
            reg._add_key(conn, signer, "init", now)
            reg._audit(conn, "init", "user.create", f"user:{admin}", None, {"roles": ["admin"]})
            reg._audit(
                conn,
                "init",
                "token.issue",
                f"user:{admin}",
                None,
                {"prefix": prefix, "expires_at": expires},
            )
        return reg, token

    @property
    def signer(self) -> Signer:
        """The private signing key, loaded on first use (reads need none)."""
        if self._signer is None:
            self._signer = load_key(self.key_path)
            self.trusted_dir.mkdir(parents=True, exist_ok=True)
            pub = self.trusted_dir / f"{self._signer.key_id}.pub"
            if not pub.exists():
                pub.write_text(self._signer.public_pem)
        return self._signer

    @property
    def trusted_dir(self) -> Path:
        return self.home / TRUSTED_DIR

    def trusted_keys(self, paths: list[str | Path] | None = None):
        """Public keys to verify with: ``paths``, else every key in ``HOME/keys/trusted``."""
        if paths:
            return load_trusted_keys(paths)
        if not self.trusted_dir.is_dir():
            raise RegistryError(
                f"no trusted public keys in {self.trusted_dir}; pass --trusted-keys"
            )
        return load_trusted_keys(self.trusted_dir)

    # --- the transaction pattern -------------------------------------------------------------

    def _audit(self, conn, actor: str, action: str, subject: str, before: Any, after: Any) -> int:
        return audit.append(
            conn, self.signer, iso(self.clock()), actor, action, subject, before, after
        )

    @contextmanager
    def _acting(self, token: str | None, action: str, subject: str) -> Iterator[tuple]:
        """(conn, actor, now) in a write transaction, with ``action``'s role checked; a
        :class:`Refused` raised inside is audited after the rollback."""
        signer = self.signer  # fail early (no key) before anything is written
        who = "anonymous"
        try:
            with write_transaction(self.engine) as conn:
                now = self.clock()
                actor = identity.authenticate(conn, token, now)
                who = actor.name
                self._require(actor, action)
                yield conn, actor, now
        except Refused as exc:
            with write_transaction(self.engine) as conn:
                audit.append(
                    conn,
                    signer,
                    iso(self.clock()),
                    who,
                    "refused",
                    subject,
                    None,
                    {"action": action, "code": exc.code, "reason": exc.message},
                )
            raise

    def audit_refusal(self, actor: str, action: str, subject: str, code: str, reason: str) -> None:
        """Record a refusal decided outside the library (a forged web request)."""
        with write_transaction(self.engine) as conn:
            audit.append(
                conn,
                self.signer,
                iso(self.clock()),
                actor,
                "refused",
                subject,
                None,
                {"action": action, "code": code, "reason": reason},
            )

    def _require(self, actor: Actor, action: str) -> None:
        if not self.policy.may(action, set(actor.roles)):
            allowed = ", ".join(self.policy.roles[action])
            raise Refused(
                "wrong_role",
                f"{actor.name} (roles: {', '.join(sorted(actor.roles))}) may not {action}: that "
                f"needs the role {allowed} (policy {self.policy.source})",
            )

    def authenticate(self, token: str | None, action: str = "read") -> Actor:
        """The actor behind ``token`` if it may do ``action`` (HTTP reads use this)."""
        with self.engine.connect() as conn:
            actor = identity.authenticate(conn, token, self.clock())
        self._require(actor, action)
        return actor

    # --- keys and users ----------------------------------------------------------------------

    def _add_key(self, conn, signer: Signer, by: str, now: datetime) -> None:
        exists = conn.execute(
            sa.select(s.signing_keys.c.key_id).where(s.signing_keys.c.key_id == signer.key_id)
        ).first()
        if not exists:
            conn.execute(
                s.signing_keys.insert().values(
                    key_id=signer.key_id,
                    public_pem=signer.public_pem,
                    created_at=iso(now),
                    created_by=by,
                )
            )
            self._audit(
                conn,
                by,
                "key.add",
                f"key:{signer.key_id}",
                None,
                {"key_id": signer.key_id, "public_pem": signer.public_pem},
            )

    def rotate_key(self, token: str) -> str:
        """Generate a new signing key; the old one signs the rotation entry and is retired
        (its public half stays trusted for what it signed). Returns the new key id."""
        old = self.signer
        with self._acting(token, "keys", f"key:{old.key_id}") as (conn, actor, now):
            staging = self.key_path.with_name(self.key_path.name + ".new")
            if staging.exists():
                staging.unlink()
            new = generate_key(staging)
            self._audit(
                conn,
                actor.name,
                "key.rotate",
                f"key:{old.key_id}",
                {"active": old.key_id},
                {"active": new.key_id},
            )
            conn.execute(
                s.signing_keys.update()
                .where(s.signing_keys.c.key_id == old.key_id)
                .values(retired_at=iso(now))
            )
            staging.replace(self.key_path)
            staging.with_name(staging.name + ".pub").replace(
                self.key_path.with_name(self.key_path.name + ".pub")
            )
            self._signer = None
            self._add_key(conn, self.signer, actor.name, now)
        return self.signer.key_id

    def add_user(self, token: str, name: str, roles: list[str] | str) -> None:
        role_list = identity.parse_roles(roles)
        with self._acting(token, "users", f"user:{name}") as (conn, actor, now):
            identity.create_user(conn, name, role_list, actor.name, now)
            self._audit(conn, actor.name, "user.create", f"user:{name}", None, {"roles": role_list})

    def set_roles(self, token: str, name: str, roles: list[str] | str) -> None:
        role_list = identity.parse_roles(roles)
        with self._acting(token, "users", f"user:{name}") as (conn, actor, _now):
            row = identity.user_row(conn, name)
            conn.execute(
                s.users.update().where(s.users.c.id == row.id).values(roles=" ".join(role_list))
            )
            self._audit(
                conn,
                actor.name,
                "user.roles",
                f"user:{name}",
                {"roles": row.roles.split()},
                {"roles": role_list},
            )

    def issue_token(self, token: str, user: str, days: float = 30.0, label: str = "") -> str:
        """A new token for ``user`` (admins for anyone, others for themselves); shown once."""
        with self._acting(token, "read", f"user:{user}") as (conn, actor, now):
            if user != actor.name:
                self._require(actor, "users")
            if not 0 < days <= self.policy.token_max_days:
                raise Refused(
                    "token_lifetime",
                    f"a token may live at most {self.policy.token_max_days:g} days "
                    f"(policy tokens.max_days), asked for {days:g}",
                )
            new, prefix, expires = identity.issue_token(conn, user, now, days, label)
            self._audit(
                conn,
                actor.name,
                "token.issue",
                f"user:{user}",
                None,
                {"prefix": prefix, "expires_at": expires, "label": label},
            )
        return new

    def revoke_token(self, token: str, prefix: str) -> None:
        with self._acting(token, "users", f"token:{prefix}") as (conn, actor, now):
            user = identity.revoke_token(conn, prefix, now)
            self._audit(
                conn,
                actor.name,
                "token.revoke",
                f"user:{user}",
                {"prefix": prefix},
                {"revoked_at": iso(now)},
            )

    def users(self) -> list[dict[str, Any]]:
        u, t = s.users, s.tokens
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(u).order_by(u.c.name)).all()
            out = []
            for r in rows:
                toks = conn.execute(
                    sa.select(t.c.prefix, t.c.expires_at, t.c.revoked_at, t.c.label).where(
                        t.c.user_id == r.id
                    )
                ).all()
                out.append(
                    {
                        "name": r.name,
                        "roles": r.roles.split(),
                        "disabled": r.disabled,
                        "tokens": [dict(x._mapping) for x in toks],
                    }
                )
        return out

    # --- targets -----------------------------------------------------------------------------

    def add_target(
        self,
        token: str,
        name: str,
        conditions: list[str],
        kind: str = "site",
        description: str = "",
    ) -> None:
        """Declare a deployment target (a site or a fleet) and the conditions it runs in."""
        identity.check_name(name, "target name")
        if kind not in ("site", "fleet"):
            raise RegistryError(f"target kind {kind!r} is not 'site' or 'fleet'")
        if not conditions:
            raise RegistryError(
                f"target {name}: declare the operating conditions it runs in (--conditions a,b)"
            )
        with self._acting(token, "targets", f"target:{name}") as (conn, actor, now):
            if conn.execute(sa.select(s.targets.c.id).where(s.targets.c.name == name)).first():
                raise RegistryError(f"target {name!r} already exists; use `targets conditions`")
            after = {"kind": kind, "conditions": list(conditions), "description": description}
            conn.execute(
                s.targets.insert().values(
                    name=name,
                    kind=kind,
                    conditions=json.dumps(list(conditions)),
                    description=description,
                    created_at=iso(now),
                    created_by=actor.name,
                )
            )
            self._audit(conn, actor.name, "target.create", f"target:{name}", None, after)

    def set_target_conditions(self, token: str, name: str, conditions: list[str]) -> None:
        with self._acting(token, "targets", f"target:{name}") as (conn, actor, _):
            row = queries.target_row(conn, name)
            conn.execute(
                s.targets.update()
                .where(s.targets.c.id == row.id)
                .values(conditions=json.dumps(list(conditions)))
            )
            self._audit(
                conn,
                actor.name,
                "target.conditions",
                f"target:{name}",
                {"conditions": json.loads(row.conditions)},
                {"conditions": list(conditions)},
            )

    def targets(self) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(s.targets).order_by(s.targets.c.name)).all()
            return [queries.target_dict(r) for r in rows]

    # --- registration ------------------------------------------------------------------------

    def register(
        self,
        token: str,
        bundle_dir: str | Path,
        model: str,
        *,
        export_report: str | Path | None = None,
        run_dir: str | Path | None = None,
        parent: str | None = None,
        tags: dict[str, str] | None = None,
        intended_use: str | None = None,
        limitations: list[str] | None = None,
    ) -> dict[str, Any]:
        """Record the bundle in ``bundle_dir`` as the next version of ``model``; signs it."""
        identity.check_name(model, "model name")
        subject = f"model:{model}"
        with self._acting(token, "register", subject):
            pass  # authenticate and check the role before reading anything
        try:
            intake = read_registration(bundle_dir, export_report, run_dir)
            stored = {name: self.artifacts.put(path) for name, path in intake.files.items()}
        except Refused as exc:
            with self._acting(token, "register", subject):
                raise exc from None
        for name, digest in stored.items():
            expected = intake.bundle.manifest["files"].get(name)
            if expected is not None and expected != digest:
                with self._acting(token, "register", subject):
                    raise Refused(
                        "tampered_bundle",
                        f"bundle refused: {name} changed while it was being registered "
                        f"(SHA-256 {digest}, manifest records {expected})",
                    )
        record = intake.record
        record["intended_use"] = intended_use
        record["limitations"] = list(limitations or [])
        with self._acting(token, "register", subject) as (conn, actor, now):
            model_id = self._model_id(conn, model, actor.name, now)
            v = s.versions
            dup = conn.execute(
                sa.select(v.c.number).where(
                    v.c.model_id == model_id, v.c.manifest_sha256 == intake.manifest_sha256
                )
            ).first()
            if dup:
                raise RegistryError(
                    f"this bundle (manifest {intake.manifest_sha256[:12]}) is already "
                    f"{model}:{dup.number}; versions are immutable and registered once"
                )
            number = (
                conn.execute(
                    sa.select(sa.func.max(v.c.number)).where(v.c.model_id == model_id)
                ).scalar()
                or 0
            ) + 1
            parent_id = self._parent_id(conn, model, model_id, parent, number)
            draft = {
                "ref": f"{model}:{number}",
                "model": model,
                "number": number,
                "author": actor.name,
                "registered_at": iso(now),
                "manifest_sha256": intake.manifest_sha256,
                "parent": parent or (f"{model}:{number - 1}" if number > 1 else None),
                "tags": tags or {},
                "record": record,
                "reviews": [],
                "stages": [],
            }
            record["card"] = model_card(draft, intended_use, limitations)
            body = canonical_json(record)
            result = conn.execute(
                v.insert().values(
                    model_id=model_id,
                    number=number,
                    manifest_sha256=intake.manifest_sha256,
                    bundle_name=intake.bundle.name,
                    bundle_version=intake.bundle.version,
                    files=json.dumps(stored, sort_keys=True),
                    author=actor.name,
                    registered_at=iso(now),
                    parent_id=parent_id,
                    tags=json.dumps(tags or {}, sort_keys=True),
                    record=body.decode(),
                    record_sha256=hashlib.sha256(body).hexdigest(),
                )
            )
            version_id = result.inserted_primary_key[0]
            self._sign(
                conn,
                version_id,
                {
                    "purpose": "registration",
                    "model": model,
                    "version": number,
                    "manifest_sha256": intake.manifest_sha256,
                    "at": iso(now),
                },
            )
            gate = record.get("gate")
            self._audit(
                conn,
                actor.name,
                "register",
                f"version:{model}:{number}",
                None,
                {
                    "manifest_sha256": intake.manifest_sha256,
                    "files": stored,
                    "record_sha256": hashlib.sha256(body).hexdigest(),
                    "parent": draft["parent"],
                    "tags": tags or {},
                    "signed_by": self.signer.key_id,
                    "gate": None
                    if gate is None
                    else {k: v["passed"] for k, v in gate["sources"].items()},
                },
            )
        return {
            "ref": f"{model}:{number}",
            "number": number,
            "notes": intake.notes,
            "manifest_sha256": intake.manifest_sha256,
        }

    def _model_id(self, conn, model: str, by: str, now: datetime) -> int:
        row = conn.execute(sa.select(s.models.c.id).where(s.models.c.name == model)).first()
        if row:
            return row.id
        result = conn.execute(
            s.models.insert().values(name=model, created_at=iso(now), created_by=by)
        )
        self._audit(conn, by, "model.create", f"model:{model}", None, {"name": model})
        return result.inserted_primary_key[0]

    def _parent_id(self, conn, model: str, model_id: int, parent: str | None, number: int):
        if parent is None:
            if number == 1:
                return None
            return conn.execute(
                sa.select(s.versions.c.id).where(
                    s.versions.c.model_id == model_id, s.versions.c.number == number - 1
                )
            ).scalar()
        pm, pn = queries.parse_ref(parent if ":" in parent else f"{model}:{parent}")
        return queries.version_row(conn, pm, pn).id

    def _sign(self, conn, version_id: int, payload: dict[str, Any]) -> None:
        entry = self.signer.sign_payload(payload)
        conn.execute(
            s.signatures.insert().values(
                version_id=version_id,
                key_id=entry["key_id"],
                payload=json.dumps(payload),
                signature=entry["signature"],
                at=payload["at"],
            )
        )

    # --- reviews, outcomes, promotion -------------------------------------------------------

    def review(self, token: str, ref: str, decision: str, comment: str = "") -> None:
        """Approve or reject a version; the author may not review their own version."""
        if decision not in ("approve", "reject"):
            raise RegistryError(f"decision {decision!r} is not approve or reject")
        model, number = queries.parse_ref(ref)
        subject = f"version:{model}:{number}"
        with self._acting(token, "review", subject) as (conn, actor, now):
            row = queries.version_row(conn, model, number)
            if row.author == actor.name:
                raise Refused(
                    "self_approval",
                    f"{actor.name} registered {model}:{number} and may not review it; ask a "
                    "reviewer who is not the author",
                )
            before = queries.latest_decisions(queries.reviews(conn, row.id), row.author)
            conn.execute(
                s.approvals.insert().values(
                    version_id=row.id,
                    reviewer=actor.name,
                    decision=decision,
                    comment=comment,
                    at=iso(now),
                )
            )
            self._audit(
                conn,
                actor.name,
                decision,
                subject,
                {"decision": (before.get(actor.name) or {}).get("decision")},
                {"decision": decision, "comment": comment},
            )

    def record_rollout_outcome(
        self,
        token: str,
        ref: str,
        target: str,
        stage: str,
        passed: bool,
        evidence: dict | None = None,
    ) -> None:
        """Record how a shadow or canary stay went (the rollout tooling calls this)."""
        if stage not in ACTIVE_STAGES:
            raise RegistryError(
                f"outcomes are recorded for {', '.join(ACTIVE_STAGES)}, not {stage!r}"
            )
        model, number = queries.parse_ref(ref)
        subject = f"version:{model}:{number}"
        with self._acting(token, "outcomes", subject) as (conn, actor, now):
            row = queries.version_row(conn, model, number)
            t = queries.target_row(conn, target)
            current = queries.open_stage(conn, row.id, t.id)
            if current is None or current.stage != stage:
                raise Refused(
                    "not_in_stage",
                    f"{ref} is {current.stage if current else 'candidate'} at {target}, not "
                    f"{stage}: an outcome is recorded for the stage the version is in",
                )
            conn.execute(
                s.outcomes.insert().values(
                    version_id=row.id,
                    target_id=t.id,
                    stage=stage,
                    passed=bool(passed),
                    evidence=json.dumps(evidence or {}, sort_keys=True),
                    recorded_by=actor.name,
                    at=iso(now),
                )
            )
            self._audit(
                conn,
                actor.name,
                "outcome",
                subject,
                None,
                {
                    "target": target,
                    "stage": stage,
                    "passed": bool(passed),
                    "evidence": evidence or {},
                },
            )

    def promote(self, token: str, ref: str, target: str, stage: str, reason: str = "") -> dict:
        """Move a version to ``stage`` at ``target`` if the policy allows it; countersigns it.

        The version of the same model that held ``stage`` there is archived (superseded).
        """
        if stage not in STAGES or stage == "candidate":
            raise RegistryError(f"stage {stage!r} is not one of {', '.join(STAGES[1:])}")
        model, number = queries.parse_ref(ref)
        subject = f"version:{model}:{number}"
        with self._acting(token, "promote", subject) as (conn, actor, now):
            row = queries.version_row(conn, model, number)
            t = queries.target_row(conn, target)
            current = queries.open_stage(conn, row.id, t.id)
            problems = promotion_problems(conn, self.policy, row, t, current, stage, now)
            if problems:
                head = f"{ref} may not enter {stage} at {target}: "
                raise Refused(problems[0][0], head + "; ".join(p[1] for p in problems))
            before = current.stage if current else "candidate"
            if current is not None:
                self._leave(conn, current.id, now)
            if stage != "archived":
                self._supersede(conn, row, t, stage, actor.name, now)
            self._enter(conn, row.id, t.id, stage, actor.name, now, reason)
            if stage != "archived":
                self._sign(
                    conn,
                    row.id,
                    {
                        "purpose": "promotion",
                        "model": model,
                        "version": number,
                        "manifest_sha256": row.manifest_sha256,
                        "target": target,
                        "stage": stage,
                        "at": iso(now),
                    },
                )
            approvals = queries.latest_decisions(queries.reviews(conn, row.id), row.author)
            self._audit(
                conn,
                actor.name,
                "promote",
                subject,
                {"target": target, "stage": before},
                {
                    "target": target,
                    "stage": stage,
                    "reason": reason,
                    "approved_by": sorted(
                        r for r, d in approvals.items() if d["decision"] == "approve"
                    ),
                },
            )
        return {"ref": ref, "target": target, "from": before, "to": stage}

    def _leave(self, conn, stage_id: int, now: datetime) -> None:
        conn.execute(s.stages.update().where(s.stages.c.id == stage_id).values(left_at=iso(now)))

    def _enter(self, conn, version_id, target_id, stage, by, now, reason="") -> None:
        conn.execute(
            s.stages.insert().values(
                version_id=version_id,
                target_id=target_id,
                stage=stage,
                entered_at=iso(now),
                entered_by=by,
                reason=reason,
            )
        )

    def _supersede(self, conn, row, target, stage: str, by: str, now: datetime) -> None:
        """Archive the version of the same model that holds ``stage`` at ``target``."""
        st, v = s.stages, s.versions
        others = conn.execute(
            sa.select(st.c.id, v.c.number)
            .join(v, v.c.id == st.c.version_id)
            .where(
                st.c.target_id == target.id,
                st.c.stage == stage,
                st.c.left_at.is_(None),
                v.c.model_id == row.model_id,
                v.c.id != row.id,
            )
        ).all()
        for other in others:
            self._leave(conn, other.id, now)
            other_row = queries.version_row(conn, row.model, other.number)
            reason = f"superseded by {row.model}:{row.number}"
            self._enter(conn, other_row.id, target.id, "archived", by, now, reason)
            self._audit(
                conn,
                by,
                "archive",
                f"version:{row.model}:{other.number}",
                {"target": target.name, "stage": stage},
                {"target": target.name, "stage": "archived", "reason": reason},
            )

    # --- devices -----------------------------------------------------------------------------

    def report_device(
        self,
        token: str,
        device_id: str,
        target: str,
        state: str,
        version: str | None = None,
        manifest_sha256: str | None = None,
        detail: dict | None = None,
    ) -> dict[str, Any]:
        """Store a device's status report (the last one per device); a change of what it runs
        or its state is a deployment event in the audit trail."""
        identity.check_name(device_id, "device id")
        if not state or len(state) > 32 or set(state) - set(STATE_PATTERN):
            raise RegistryError(
                f"device state {state!r}: use lowercase letters and _ (e.g. running)"
            )
        model, number = queries.parse_ref(version) if version else (None, None)
        with self._acting(token, "report", f"device:{device_id}") as (conn, actor, now):
            t = queries.target_row(conn, target)
            known = None
            if model is not None:
                known = queries.version_row(conn, model, number).manifest_sha256
            verified = manifest_sha256 is None or known is None or known == manifest_sha256
            report = {
                "target": target,
                "state": state,
                "version": version,
                "manifest_sha256": manifest_sha256,
                "matches_registry": verified,
                "detail": detail or {},
            }
            d = s.devices
            last = conn.execute(sa.select(d).where(d.c.device_id == device_id)).first()
            values = {
                "target_id": t.id,
                "model": model,
                "version_number": number,
                "manifest_sha256": manifest_sha256 or known,
                "state": state,
                "report": json.dumps(report, sort_keys=True),
                "reported_by": actor.name,
                "last_seen": iso(now),
            }
            if last is None:
                conn.execute(d.insert().values(device_id=device_id, **values))
            else:
                conn.execute(d.update().where(d.c.device_id == device_id).values(**values))
            changed = last is None or (
                last.model,
                last.version_number,
                last.state,
                last.target_id,
            ) != (model, number, state, t.id)
            if changed or not verified:
                conn.execute(
                    s.deployments.insert().values(
                        device_id=device_id,
                        target_id=t.id,
                        model=model,
                        version_number=number,
                        manifest_sha256=values["manifest_sha256"],
                        state=state,
                        at=iso(now),
                    )
                )
                before = None if last is None else json.loads(last.report)
                self._audit(
                    conn, actor.name, "device.report", f"device:{device_id}", before, report
                )
        return report

    def devices(self, target: str | None = None) -> list[dict[str, Any]]:
        d, t = s.devices, s.targets
        with self.engine.connect() as conn:
            query = sa.select(d, t.c.name.label("target")).join(t, t.c.id == d.c.target_id)
            if target:
                query = query.where(t.c.name == target)
            rows = conn.execute(query.order_by(d.c.device_id)).all()
            return [
                {
                    "device_id": r.device_id,
                    "target": r.target,
                    "state": r.state,
                    "version": None if r.model is None else f"{r.model}:{r.version_number}",
                    "last_seen": r.last_seen,
                    "report": json.loads(r.report),
                }
                for r in rows
            ]

    # --- reading -----------------------------------------------------------------------------

    def models(self) -> list[str]:
        with self.engine.connect() as conn:
            return list(
                conn.execute(sa.select(s.models.c.name).order_by(s.models.c.name)).scalars()
            )

    def versions(self, model: str | None = None) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            return queries.list_versions(conn, model)

    def version(self, ref: str) -> dict[str, Any]:
        model, number = queries.parse_ref(ref)
        with self.engine.connect() as conn:
            return queries.version_dict(conn, queries.version_row(conn, model, number))

    def assignments(self, target: str, at: str | None = None) -> dict[str, dict]:
        with self.engine.connect() as conn:
            return queries.assignments(conn, target, at)

    def card(self, ref: str) -> dict[str, Any]:
        """The model card with the approvals and deployments as they are now."""
        version = self.version(ref)
        stored = version["record"].get("card") or {}
        card = model_card(
            version, version["record"].get("intended_use"), version["record"].get("limitations")
        )
        if stored:
            card["model_details"] = stored.get("model_details", card["model_details"])
        return card

    def audit_entries(self, subject: str | None = None, limit: int = 200) -> list[dict[str, Any]]:
        """The newest audit entries (about ``subject`` when given), newest first."""
        a = s.audit
        query = sa.select(a).order_by(a.c.seq.desc()).limit(limit)
        if subject:
            query = query.where(a.c.subject == subject)
        with self.engine.connect() as conn:
            rows = conn.execute(query).all()
        return [
            {
                **{
                    k: getattr(r, k)
                    for k in ("seq", "at", "actor", "action", "subject", "entry_hash")
                },
                "before": json.loads(r.before),
                "after": json.loads(r.after),
            }
            for r in rows
        ]

    def verify_audit(self, trusted_paths=None, expect=None, signatures: bool = True):
        """:func:`plantml.registry.audit.verify_chain` with this registry's trusted keys."""
        trusted = self.trusted_keys(trusted_paths) if signatures else {}
        with self.engine.connect() as conn:
            return audit.verify_chain(conn, trusted, expect, signatures)

    def audit_head(self) -> tuple[int, str]:
        with self.engine.connect() as conn:
            return audit.head(conn)
