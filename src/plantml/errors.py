"""Errors that plantml shows to its users.

Every error names the problem and the fix. They all derive from
:class:`PlantMLError` so that the command-line entry points can print them
as one readable message instead of a traceback.
"""

from __future__ import annotations


class PlantMLError(Exception):
    """Base of every error meant to be read by a user."""


class DataError(PlantMLError):
    """The data (a file, a column, its values) cannot be used as it is."""


class ConfigError(PlantMLError):
    """A configuration value or override is wrong."""


class CheckpointError(PlantMLError):
    """A checkpoint or its run folder cannot be used."""


def did_you_mean(name: str, choices: list[str] | tuple[str, ...], limit: int = 3) -> str:
    """A short hint listing the closest of ``choices`` to ``name`` (or all of them)."""
    import difflib

    close = difflib.get_close_matches(name, list(choices), n=limit, cutoff=0.5)
    if close:
        return "did you mean " + ", ".join(repr(c) for c in close) + "?"
    shown = ", ".join(repr(c) for c in list(choices)[:30])
    more = f" (and {len(choices) - 30} more)" if len(choices) > 30 else ""
    return f"available: {shown}{more}"
