"""Columns from file names and folders: ``data.path_fields``.

A pattern such as ``'{state}{speed:d}hz{load:d}.csv.gz'`` or ``'{split}/{asset}.csv'``
is matched against the end of each file's path; every ``{name}`` becomes a column
holding that part of the path. ``{name}`` matches any text inside one path part
(as little as possible), ``{name:d}`` an integer, ``{name:f}`` a decimal number,
``{name:w}`` letters and underscores. Values are typed: integers, then decimal
numbers, else text. Use ``:d`` or ``:w`` where two fields touch, so that the
split between them is clear.
"""

from __future__ import annotations

import re
from pathlib import Path

from plantml.errors import ConfigError, DataError

_FIELD = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)(?::([dfw]))?\}")
_KINDS = {
    None: r"[^/]+?",
    "d": r"[-+]?\d+",
    "f": r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?",
    "w": r"[A-Za-z_]+",
}


def compile_pattern(pattern: str) -> tuple[re.Pattern, list[str]]:
    """The regex for ``pattern`` (matched at the end of a path) and its field names."""
    if not isinstance(pattern, str) or not pattern.strip():
        raise ConfigError(
            "data.path_fields must be a pattern such as '{asset}.csv' or '{split}/{asset}.csv'"
        )
    parts, names, pos = [], [], 0
    for match in _FIELD.finditer(pattern):
        parts.append(re.escape(pattern[pos : match.start()]))
        name, kind = match.group(1), match.group(2)
        if name in names:
            raise ConfigError(f"data.path_fields names the field {name!r} twice in {pattern!r}")
        names.append(name)
        parts.append(f"(?P<{name}>{_KINDS[kind]})")
        pos = match.end()
    parts.append(re.escape(pattern[pos:]))
    if not names:
        raise ConfigError(
            f"data.path_fields={pattern!r} has no field; write fields in braces, "
            "e.g. '{asset}.csv' or '{fault}_{load:d}hp.csv'"
        )
    leftover = _FIELD.sub("", pattern)
    if "{" in leftover or "}" in leftover:
        raise ConfigError(
            f"data.path_fields={pattern!r} has a brace that is not a field; fields look like "
            "{name}, {name:d} (integer), {name:f} (number) or {name:w} (letters)"
        )
    return re.compile(r"(?:^|/)" + "".join(parts) + r"$"), names


def typed(text: str) -> int | float | str:
    """A field's text as an int, else a float, else the text itself."""
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            continue
    return text


def path_fields(pattern: str, files: list[Path]) -> list[dict[str, int | float | str]]:
    """The fields of each file's path, in file order; a file that does not match is an error."""
    regex, names = compile_pattern(pattern)
    out = []
    for path in files:
        match = regex.search(Path(path).as_posix())
        if match is None:
            raise DataError(
                f"file {str(path)!r} does not match data.path_fields={pattern!r}; fix the pattern "
                "or narrow data.path to the files that follow it"
            )
        out.append({name: typed(match.group(name)) for name in names})
    return out
