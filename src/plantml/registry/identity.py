"""Users, roles and API tokens. Tokens are stored as SHA-256 hashes and never logged.

A token is ``pmr_`` + 43 random URL-safe characters (256 bits), shown once when issued. Its
hash is its lookup key: with that much entropy a plain SHA-256 cannot be reversed, and no
salt is needed. ``prefix`` (the first 12 characters) identifies a token in listings and
audit entries without revealing it.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa

from plantml.registry import schema
from plantml.registry.errors import AuthError, NotFound, RegistryError
from plantml.registry.policy import ROLES
from plantml.registry.timefmt import iso, parse_time

TOKEN_PREFIX = "pmr_"
TOKEN_PATTERN = re.compile(r"pmr_[A-Za-z0-9_-]{20,}")
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,127}$")


@dataclass(frozen=True)
class Actor:
    """An authenticated caller: user name, roles, and the token's public prefix."""

    name: str
    roles: frozenset[str]
    token_prefix: str = ""
    token_expires: str = ""


def token_sha256(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def check_name(name: str, what: str = "user name") -> str:
    if not isinstance(name, str) or not NAME_PATTERN.match(name):
        raise RegistryError(
            f"{what} {name!r} is not allowed; use letters, digits and _ . @ - (up to 128)"
        )
    return name


def parse_roles(roles: str | list[str] | tuple[str, ...] | None) -> list[str]:
    """``"reviewer,operator"`` or a list -> sorted known roles (unknown ones are an error)."""
    items = (
        (roles or "").replace(",", " ").split()
        if not isinstance(roles, list | tuple)
        else list(roles)
    )
    unknown = sorted(set(items) - set(ROLES))
    if unknown or not items:
        raise RegistryError(f"unknown or no role(s) {unknown}; roles are: {', '.join(ROLES)}")
    return sorted(set(items))


def create_user(conn: sa.Connection, name: str, roles: list[str], by: str, now: datetime) -> None:
    check_name(name)
    exists = conn.execute(sa.select(schema.users.c.id).where(schema.users.c.name == name)).first()
    if exists:
        raise RegistryError(f"user {name!r} already exists; use `users roles` to change roles")
    conn.execute(
        schema.users.insert().values(
            name=name, roles=" ".join(roles), created_at=iso(now), created_by=by, disabled=False
        )
    )


def user_row(conn: sa.Connection, name: str) -> sa.Row:
    row = conn.execute(sa.select(schema.users).where(schema.users.c.name == name)).first()
    if row is None:
        raise NotFound(f"no user {name!r}; add one with `plantml-registry users add`")
    return row


def issue_token(
    conn: sa.Connection, user: str, now: datetime, days: float, label: str = ""
) -> tuple[str, str, str]:
    """A new token for ``user`` valid ``days``; returns (token, prefix, expires_at)."""
    row = user_row(conn, user)
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    expires = iso(now + timedelta(days=days))
    conn.execute(
        schema.tokens.insert().values(
            user_id=row.id,
            token_sha256=token_sha256(token),
            prefix=token[:12],
            label=label,
            created_at=iso(now),
            expires_at=expires,
        )
    )
    return token, token[:12], expires


def authenticate(conn: sa.Connection, token: str | None, now: datetime) -> Actor:
    """The actor behind ``token``; :class:`AuthError` naming why it is not accepted."""
    if not token:
        raise AuthError("no_token", "no API token given; pass --token or PLANTML_REGISTRY_TOKEN")
    if not TOKEN_PATTERN.fullmatch(token):
        raise AuthError("unknown_token", "the API token is not a plantml registry token")
    t, u = schema.tokens, schema.users
    row = conn.execute(
        sa.select(t.c.prefix, t.c.expires_at, t.c.revoked_at, u.c.name, u.c.roles, u.c.disabled)
        .join(u, u.c.id == t.c.user_id)
        .where(t.c.token_sha256 == token_sha256(token))
    ).first()
    if row is None:
        raise AuthError("unknown_token", "the API token is not known to this registry")
    if row.revoked_at is not None:
        raise AuthError(
            "revoked_token", f"token {row.prefix}... of {row.name} was revoked at {row.revoked_at}"
        )
    if parse_time(row.expires_at) <= now:
        raise AuthError(
            "expired_token",
            f"token {row.prefix}... of {row.name} expired at {row.expires_at}; ask an admin "
            "for a new one (`plantml-registry tokens issue`)",
        )
    if row.disabled:
        raise AuthError("disabled_user", f"user {row.name} is disabled")
    return Actor(row.name, frozenset(row.roles.split()), row.prefix, row.expires_at)


def revoke_token(conn: sa.Connection, prefix: str, now: datetime) -> str:
    """Revoke the token whose public prefix is ``prefix``; returns its user's name."""
    t, u = schema.tokens, schema.users
    rows = conn.execute(
        sa.select(t.c.id, u.c.name)
        .join(u, u.c.id == t.c.user_id)
        .where(t.c.prefix == prefix, t.c.revoked_at.is_(None))
    ).all()
    if len(rows) != 1:
        raise NotFound(f"no single active token with prefix {prefix!r} (found {len(rows)})")
    conn.execute(t.update().where(t.c.id == rows[0].id).values(revoked_at=iso(now)))
    return rows[0].name
