"""Rows in, normalized model inputs out: parsing, operating conditions, normalization.

Input is columnar (``{column: sequence}``): CSV gives strings, Parquet numbers,
timestamps and strings. Every value is checked; a row with a missing,
non-numeric or non-finite value becomes a :class:`RowError` and only that row
is skipped. Condition codes and normalization are the rules training used
(:mod:`plantml.core.conditions`, :mod:`plantml.core.normalize`): see :mod:`plantml.edge.bundle`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np

from plantml.core.conditions import ConditionRule, as_text
from plantml.core.normalize import normalize
from plantml.core.valid_range import clamp, describe, outside
from plantml.edge.bundle import Bundle

FIX_VALUE = "fix the value or drop the row"
DEFAULT_ASSET = "asset"  # the asset of rows for a bundle trained without asset ids


class InputError(ValueError):
    """The whole input cannot be used (a required column is missing, columns differ in length)."""


class RowError(ValueError):
    """One input row cannot be used; the row is skipped and the others go on.

    Attributes: ``row_number`` (1 = the first data row), ``asset``, ``column``
    (the first bad column, or None) and ``message`` (what is wrong and the fix).
    """

    def __init__(self, row_number: int, asset: str | None, column: str | None, message: str):
        self.row_number, self.asset, self.column, self.message = (
            row_number,
            asset,
            column,
            message,
        )
        super().__init__(str(self))

    def __str__(self) -> str:
        where = f"row {self.row_number}"
        if self.asset is not None:
            where += f" (asset {self.asset!r})"
        if self.column is not None:
            where += f", column {self.column!r}"
        return f"{where}: {self.message}"

    def __repr__(self) -> str:
        return f"RowError({self.row_number!r}, {self.asset!r}, {self.column!r}, {self.message!r})"

    def as_dict(self) -> dict[str, Any]:
        return {
            "row": self.row_number,
            "asset": self.asset,
            "column": self.column,
            "message": self.message,
        }


def _is_missing(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _to_float(value: Any) -> float:
    """``value`` as a float: NaN when it is not a number (text, a list, a JSON true/false),
    infinite when it is a number too large for a float (10**400)."""
    if isinstance(value, bool):
        return math.nan  # JSON true/false is not a reading
    try:
        return float(value)
    except OverflowError:
        return (math.inf if value > 0 else -math.inf) if isinstance(value, int) else math.nan
    except (TypeError, ValueError):
        return math.nan


def parse_numbers(values: Sequence | np.ndarray) -> np.ndarray:
    """Values as float64, (n,); missing or non-numeric values become NaN, huge ones inf."""
    if isinstance(values, np.ndarray) and values.dtype.kind in "fiub":
        return values.astype(np.float64)
    try:
        out = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError, OverflowError):
        return np.array([_to_float(v) for v in values], dtype=np.float64)
    if out.ndim != 1 or (
        len(values) and not isinstance(values[0], str) and any(isinstance(v, bool) for v in values)
    ):  # nested sequences, or booleans that numpy would read as 0/1
        return np.array([_to_float(v) for v in values], dtype=np.float64)
    return out


def describe_bad_number(value: Any) -> str:
    """Why ``value`` is not a usable model input, with the fix."""
    if _is_missing(value) or (isinstance(value, float | np.floating) and math.isnan(value)):
        return f"missing value; the model needs a number in every feature column ({FIX_VALUE})"
    number = _to_float(value)
    shown = repr(value) if len(repr(value)) <= 40 else repr(value)[:36] + "..."
    if math.isnan(number):
        if isinstance(value, str) and value.strip().lower() in ("nan", "+nan", "-nan"):
            return f"value is NaN; the model needs a finite number ({FIX_VALUE})"
        return f"not a number: {shown} ({FIX_VALUE})"
    return f"value {shown} is infinite or too large; the model needs a finite number ({FIX_VALUE})"


def _parse_timestamp(value: Any) -> float:
    if isinstance(value, datetime):
        stamp = value
    elif isinstance(value, np.datetime64):
        if np.isnat(value):
            return math.nan
        return float(value.astype("datetime64[ns]").astype(np.int64)) / 1e9
    elif isinstance(value, str):
        try:
            stamp = datetime.fromisoformat(value.strip())
        except ValueError:
            return math.nan
    else:
        return math.nan
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=UTC)  # naive timestamps are UTC, as in training
    return stamp.timestamp()


def parse_times(values: Sequence | np.ndarray, kind: str) -> np.ndarray:
    """Times as float64 (n,): numbers as they are, ISO timestamps as POSIX seconds; NaN if bad."""
    if kind == "number":
        return parse_numbers(values)
    if isinstance(values, np.ndarray) and values.dtype.kind == "M":
        ns = values.astype("datetime64[ns]")
        out = ns.astype(np.int64) / 1e9
        out[np.isnat(ns)] = np.nan
        return out
    cache: dict[Any, float] = {}  # grids repeat the same timestamps across assets
    out = np.empty(len(values), dtype=np.float64)
    for i, v in enumerate(values):
        try:
            out[i] = cache[v]
        except KeyError:
            out[i] = cache[v] = _parse_timestamp(v)
        except TypeError:  # unhashable
            out[i] = _parse_timestamp(v)
    return out


def describe_bad_time(value: Any, kind: str) -> str:
    if _is_missing(value):
        return "missing time; every row needs a time (fix or drop the row)"
    if kind == "number":
        return f"time {value!r} is not a finite number (fix or drop the row)"
    return (
        f"time {value!r} is not an ISO-8601 timestamp such as 2024-05-01T12:00:00 "
        "(fix or drop the row)"
    )


def describe_time_order(time_now: float, time_before: float, kind: str) -> str:
    """Why a row whose time is not after its asset's previous row is rejected, with the fix."""

    def show(t: float) -> str:
        if kind == "number":
            return f"{t:g}"
        return datetime.fromtimestamp(t, UTC).isoformat().replace("+00:00", "Z")

    if time_now == time_before:
        return (
            f"duplicate time: the asset already has a row at this time ({show(time_now)}); "
            "send one row per asset and time"
        )
    return (
        f"time goes backwards: {show(time_now)} is before the asset's previous row at "
        f"{show(time_before)}; send each asset's rows in increasing time order"
    )


def as_given(values: Sequence | np.ndarray, idx: np.ndarray) -> list:
    """The time values at ``idx`` for output: as in the input, timestamps as ISO-8601 UTC."""
    if isinstance(values, np.ndarray):
        picked = values[idx]
        if picked.dtype.kind == "M":
            return np.datetime_as_string(picked, timezone="UTC").tolist()
        return picked.tolist()
    return [values[i] for i in idx]


def given_time(value: Any) -> Any:
    """One time value for output, the way :func:`as_given` shows it."""
    if isinstance(value, np.datetime64):
        return str(np.datetime_as_string(value, timezone="UTC"))
    return value.item() if isinstance(value, np.generic) else value


def _memo_map(func, values: Sequence) -> list:
    """``[func(v) for v in values]``, computed once per distinct value (ids repeat a lot)."""
    memo: dict[Any, Any] = {}
    out = []
    for v in values:
        try:
            out.append(memo[v])
        except KeyError:
            out.append(memo.setdefault(v, func(v)))
        except TypeError:  # unhashable
            out.append(func(v))
    return out


@dataclass
class ParsedRows:
    """Rows parsed and normalized, (n,) each; ``ok`` is False where ``errors`` has the row.

    ``x`` is (n, C) float32, normalized (garbage where not ok); ``time`` float64
    seconds (datetime) or time units (number). ``clipped``: per feature, accepted
    rows whose value was clamped into the valid range (``action: clip``).
    ``unseen``: per condition value not seen in training, the accepted rows with it.
    """

    asset: list[str | None]
    time: np.ndarray
    x: np.ndarray
    code: np.ndarray
    ok: np.ndarray
    errors: dict[int, RowError]
    clipped: dict[str, int] = field(default_factory=dict)
    unseen: dict[str, int] = field(default_factory=dict)


class Preprocessor:
    """Parses and normalizes columnar rows the way the bundle's training pipeline did."""

    def __init__(self, bundle: Bundle):
        self.bundle = bundle
        self.features = bundle.feature_columns
        self.time_kind = bundle.input["time_kind"]
        self.conditions = ConditionRule(bundle.conditions)
        self.per_condition = bool(bundle.manifest["normalization"]["per_condition"])
        self.required = bundle.required_columns

    def check_columns(self, columns: Sequence[str]) -> None:
        """Raise :class:`InputError` naming the required columns that are absent."""
        missing = [c for c in self.required if c not in columns]
        if missing:
            raise InputError(
                f"input lacks the column(s) {missing} that bundle {self.bundle.name!r} needs; "
                f"columns present: {', '.join(map(str, columns)) or 'none'}; "
                f"the input needs: {', '.join(self.required)}"
            )

    def parse(
        self, rows: Mapping[str, Sequence], first_row: int = 1, asset: str | None = None
    ) -> ParsedRows:
        """Parse columnar ``rows``; row ``i`` is reported as number ``first_row + i``.

        ``asset`` names the one asset of every row when the bundle has no asset column
        (default :data:`DEFAULT_ASSET`); it is ignored otherwise.
        """
        self.check_columns(list(rows))
        lengths = {len(rows[c]) for c in self.required}
        if len(lengths) > 1:
            raise InputError(f"input columns differ in length ({sorted(lengths)}); fix the input")
        n = lengths.pop()
        errors: dict[int, RowError] = {}
        asset_col, time_col = self.bundle.asset_column, self.bundle.time_column
        if asset_col is None:
            assets = [asset or DEFAULT_ASSET] * n
        else:
            assets = _memo_map(as_text, rows[asset_col])

        def flag(bad: np.ndarray, column: str, describe) -> None:
            if not bad.any():
                return
            for i in np.flatnonzero(bad):
                if int(i) not in errors:
                    errors[int(i)] = RowError(
                        first_row + int(i), assets[i], column, describe(rows[column][i])
                    )

        for i, a in enumerate(assets):
            if a is None:
                errors[i] = RowError(
                    first_row + i, None, asset_col, "missing asset id (fix or drop the row)"
                )
        time = parse_times(rows[time_col], self.time_kind)
        flag(~np.isfinite(time), time_col, lambda v: describe_bad_time(v, self.time_kind))
        x = np.empty((n, len(self.features)), dtype=np.float64)
        for j, col in enumerate(self.features):
            x[:, j] = parse_numbers(rows[col])
        bad = ~np.isfinite(x)
        if bad.any():  # report the first bad feature of each row, in column order
            for j, col in enumerate(self.features):
                flag(bad[:, j], col, describe_bad_number)
        clamped = self._valid_range(x, flag)
        settings = None
        cond = self.conditions
        if cond.mode == "cluster":
            settings = np.column_stack([parse_numbers(rows[c]) for c in cond.settings])
            for j, col in enumerate(cond.settings):
                flag(~np.isfinite(settings[:, j]), col, describe_bad_number)
        elif cond.mode == "column":
            missing = np.array([as_text(v) is None for v in rows[cond.column]], dtype=bool)
            flag(
                missing,
                cond.column,
                lambda v: "missing operating condition; fill it in or drop the row",
            )
        ok = np.ones(n, dtype=bool)
        ok[list(errors)] = False
        codes = cond.codes(rows.get(cond.column) if cond.column else None, settings, n)
        bundle = self.bundle
        x = np.where(ok[:, None], x, 0.0)
        x_norm = normalize(x, codes, bundle.offset, bundle.scale, self.per_condition)
        clipped = {c: int((m & ok).sum()) for c, m in clamped.items() if (m & ok).any()}
        unseen: dict[str, int] = {}
        if cond.mode == "column" and ok.any():
            for i in np.flatnonzero(ok & (codes < 0)):
                value = as_text(rows[cond.column][i]) or ""
                unseen[value] = unseen.get(value, 0) + 1
        return ParsedRows(assets, time, x_norm, codes, ok, errors, clipped, unseen)

    def _valid_range(self, x: np.ndarray, flag) -> dict[str, np.ndarray]:
        """Apply the bundle's valid range to the raw features ``x`` (n, C) in place.

        ``action: nan`` flags rows with a value outside (``flag``); ``clip`` clamps the
        value. Returns the clamped rows per column.
        """
        accepted = self.bundle.valid_range
        clamped: dict[str, np.ndarray] = {}
        if not accepted:
            return clamped
        for j, col in enumerate(self.features):
            bound = accepted["bounds"].get(col)
            if bound is None:
                continue
            out = outside(x[:, j], bound)
            if not out.any():
                continue
            if accepted["action"] == "nan":
                flag(out, col, lambda v, c=col, b=bound: describe(_to_float(v), c, b))
            else:
                x[:, j] = clamp(x[:, j], bound)
                clamped[col] = out
        return clamped
