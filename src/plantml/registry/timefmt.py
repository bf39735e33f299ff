"""Times in the registry: timezone-aware UTC, stored as ISO-8601 text with microseconds."""

from __future__ import annotations

from datetime import UTC, datetime

from plantml.registry.errors import RegistryError


def utcnow() -> datetime:
    return datetime.now(UTC)


def iso(t: datetime) -> str:
    """``2026-05-01T12:00:00.000000+00:00``: fixed width, so text order is time order."""
    return t.astimezone(UTC).isoformat(timespec="microseconds")


def parse_time(text: str) -> datetime:
    """An ISO-8601 time; one without a zone is taken as UTC."""
    try:
        t = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except (ValueError, AttributeError):
        raise RegistryError(f"time {text!r} is not ISO-8601 (e.g. 2026-05-01T12:00)") from None
    return t if t.tzinfo else t.replace(tzinfo=UTC)
