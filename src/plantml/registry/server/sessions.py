"""Review-page sessions: a random cookie id -> the reviewer's token and a CSRF token, in memory.

The session cookie is HttpOnly and SameSite=Strict (Secure under TLS); every form carries the
session's CSRF token, and a POST whose token is missing or wrong, or whose Origin is another
site's, is refused. Tokens live only in this process's memory; they are never written to a
page, a cookie or a log.
"""

from __future__ import annotations

import hmac
import secrets
import threading
import time
from dataclasses import dataclass

COOKIE = "plantml_session"
MAX_AGE_S = 8 * 3600


@dataclass
class Session:
    token: str
    user: str
    roles: frozenset[str]
    csrf: str
    expires: float

    def __repr__(self) -> str:  # never show the token
        return f"Session(user={self.user!r})"


class Sessions:
    """Thread-safe in-memory session store."""

    def __init__(self) -> None:
        self._items: dict[str, Session] = {}
        self._lock = threading.Lock()

    def create(self, token: str, user: str, roles: frozenset[str], token_expires: float) -> str:
        sid = secrets.token_urlsafe(32)
        expires = min(time.time() + MAX_AGE_S, token_expires)
        with self._lock:
            self._items[sid] = Session(token, user, roles, secrets.token_urlsafe(32), expires)
        return sid

    def get(self, sid: str | None) -> Session | None:
        if not sid:
            return None
        with self._lock:
            session = self._items.get(sid)
            if session is not None and session.expires <= time.time():
                del self._items[sid]
                return None
            return session

    def drop(self, sid: str | None) -> None:
        with self._lock:
            self._items.pop(sid or "", None)


def csrf_problem(
    session: Session, sent: str | None, origin: str | None, own_origin: str
) -> str | None:
    """Why a form POST is refused as cross-site (None when it is the page's own)."""
    if origin and origin != "null" and origin.rstrip("/") != own_origin:
        return f"cross-site request from {origin} refused"
    if origin == "null":
        return "request from an opaque origin refused"
    if not sent:
        return "the form's CSRF token is missing: reload the page and submit again"
    if not hmac.compare_digest(sent, session.csrf):
        return "the form's CSRF token is wrong: reload the page and submit again"
    return None
