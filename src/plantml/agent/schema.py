"""Reading a config mapping key by key, with errors that name the key and the fix.

:class:`Section` wraps one mapping of the parsed ``agent.yaml`` (or ``.toml``)
and its dotted location (``models[0].alarm``). Each ``get_*`` call checks one
key's type and range; :meth:`Section.done` rejects the keys nobody asked for,
suggesting the closest valid name (a typo such as ``bundel`` must not be
silently ignored on a plant).
"""

from __future__ import annotations

import contextlib
import difflib
import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from plantml.agent.errors import AgentConfigError

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0, "d": 86400.0}
_DURATION = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*(ms|s|min|m|h|d)\s*$")
_SIZE = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*(B|KB|MB|GB|KiB|MiB|GiB)\s*$", re.IGNORECASE)
_SIZE_UNITS = {
    "b": 1,
    "kb": 10**3,
    "mb": 10**6,
    "gb": 10**9,
    "kib": 2**10,
    "mib": 2**20,
    "gib": 2**30,
}


def parse_duration(value: Any, where: str) -> float:
    """Seconds from a number (seconds) or a string such as ``90s``, ``5m``, ``2h``, ``1d``."""
    if isinstance(value, bool):
        raise AgentConfigError(f"{where}: expected a duration such as 30, '90s', '5m' or '2h'")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str) and (match := _DURATION.match(value)):
        seconds = float(match.group(1)) * _UNITS[match.group(2)]
    else:
        raise AgentConfigError(
            f"{where}: {value!r} is not a duration; write seconds (30) or a string such as "
            "'90s', '5m', '2h', '1d'"
        )
    if not math.isfinite(seconds) or seconds < 0:
        raise AgentConfigError(f"{where}: a duration must be >= 0, got {value!r}")
    return seconds


def parse_size(value: Any, where: str) -> int:
    """Bytes from an integer or a string such as ``100MB`` or ``1GiB``."""
    if isinstance(value, int) and not isinstance(value, bool):
        size = value
    elif isinstance(value, str) and (match := _SIZE.match(value)):
        size = int(float(match.group(1)) * _SIZE_UNITS[match.group(2).lower()])
    else:
        raise AgentConfigError(
            f"{where}: {value!r} is not a size; write bytes (1000000) or a string such as "
            "'100MB' or '1GiB'"
        )
    if size <= 0:
        raise AgentConfigError(f"{where}: a size must be > 0, got {value!r}")
    return size


class Section:
    """One mapping of the config and where it sits (``models[0].alarm``)."""

    def __init__(self, data: Any, where: str, base_dir: Path):
        if data is None:
            data = {}
        if not isinstance(data, Mapping):
            raise AgentConfigError(
                f"{where or 'the config'}: expected a mapping of keys, got {type(data).__name__}"
            )
        self.data = dict(data)
        self.where = where
        self.base_dir = base_dir
        self._used: set[str] = set()

    def key(self, name: str) -> str:
        return f"{self.where}.{name}" if self.where else name

    def has(self, name: str) -> bool:
        return name in self.data and self.data[name] is not None

    def raw(self, name: str, default: Any = None) -> Any:
        self._used.add(name)
        value = self.data.get(name)
        return default if value is None else value

    def require(self, name: str, fix: str) -> Any:
        self._used.add(name)
        if self.data.get(name) is None:
            raise AgentConfigError(f"{self.key(name)} is missing; {fix}")
        return self.data[name]

    def section(self, name: str) -> Section:
        return Section(self.raw(name, {}), self.key(name), self.base_dir)

    def sections(self, name: str, fix: str, required: bool = True) -> list[Section]:
        items = self.require(name, fix) if required else self.raw(name, [])
        if not isinstance(items, list):
            raise AgentConfigError(f"{self.key(name)}: expected a list; {fix}")
        if required and not items:
            raise AgentConfigError(f"{self.key(name)} is empty; {fix}")
        return [
            Section(item, f"{self.key(name)}[{i}]", self.base_dir) for i, item in enumerate(items)
        ]

    def string(self, name: str, default: str | None = None, choices: tuple[str, ...] = ()) -> Any:
        value = self.raw(name, default)
        if value is None:
            return None
        if not isinstance(value, str) or not value.strip():
            raise AgentConfigError(f"{self.key(name)}: expected a non-empty string, got {value!r}")
        if choices and value not in choices:
            raise AgentConfigError(
                f"{self.key(name)}: {value!r} is not one of {', '.join(choices)}"
            )
        return value

    def integer(
        self, name: str, default: int, low: int | None = None, high: int | None = None
    ) -> int:
        value = self.raw(name, default)
        if isinstance(value, bool) or not isinstance(value, int):
            raise AgentConfigError(f"{self.key(name)}: expected an integer, got {value!r}")
        if (low is not None and value < low) or (high is not None and value > high):
            bounds = f">= {low}" if high is None else f"between {low} and {high}"
            raise AgentConfigError(f"{self.key(name)}: must be {bounds}, got {value}")
        return value

    def number(self, name: str, default: float | None, positive: bool = False) -> Any:
        value = self.raw(name, default)
        if value is None:
            return None
        if isinstance(value, str):  # PyYAML reads 1.0e12 (no sign in the exponent) as text
            with contextlib.suppress(ValueError):
                value = float(value)
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
        ):
            raise AgentConfigError(f"{self.key(name)}: expected a finite number, got {value!r}")
        if positive and value <= 0:
            raise AgentConfigError(f"{self.key(name)}: must be > 0, got {value}")
        return float(value)

    def boolean(self, name: str, default: bool) -> bool:
        value = self.raw(name, default)
        if not isinstance(value, bool):
            raise AgentConfigError(f"{self.key(name)}: expected true or false, got {value!r}")
        return value

    def duration(self, name: str, default: Any) -> Any:
        value = self.raw(name, default)
        return None if value is None else parse_duration(value, self.key(name))

    def size(self, name: str, default: Any) -> int:
        return parse_size(self.raw(name, default), self.key(name))

    def path(self, name: str, default: str | None = None, must_exist: bool = False) -> Any:
        value = self.string(name, default)
        if value is None:
            return None
        path = Path(value).expanduser()
        if not path.is_absolute():
            path = self.base_dir / path
        if must_exist and not path.exists():
            raise AgentConfigError(
                f"{self.key(name)}: {path} does not exist; fix the path (relative paths start "
                f"at the config file's folder, {self.base_dir})"
            )
        return path

    def string_list(self, name: str, default: list[str] | None = None) -> list[str]:
        value = self.raw(name, default if default is not None else [])
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            raise AgentConfigError(f"{self.key(name)}: expected a list of strings, got {value!r}")
        return list(value)

    def done(self) -> None:
        """Reject keys that were never read: they are typos or options that do not exist."""
        unknown = sorted(set(self.data) - self._used)
        if not unknown:
            return
        bad = unknown[0]
        close = difflib.get_close_matches(bad, sorted(self._used), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise AgentConfigError(
            f"unknown key {self.key(bad)}{hint} (valid keys here: {', '.join(sorted(self._used))})"
        )
