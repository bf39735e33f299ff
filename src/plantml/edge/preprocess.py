"""Rows in, normalized model inputs out: parsing, operating conditions, normalization.

Input is columnar (``{column: sequence}``): CSV gives strings, Parquet numbers,
timestamps and strings. Every value is checked; a row with a missing,
non-numeric or non-finite value becomes a :class:`RowError` and only that row
is skipped. The rules match the training pipeline (``plantml.data.conditions``
and ``plantml.data.scaling``): see :mod:`plantml.edge.bundle`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np

from plantml.edge.bundle import Bundle

FIX_VALUE = "fix the value or drop the row"


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
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def parse_numbers(values: Sequence | np.ndarray) -> np.ndarray:
    """Values as float64, (n,); missing or non-numeric values become NaN."""
    if isinstance(values, np.ndarray) and values.dtype.kind in "fiub":
        return values.astype(np.float64)
    try:
        return np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        return np.array([_to_float(v) for v in values], dtype=np.float64)


def describe_bad_number(value: Any) -> str:
    """Why ``value`` is not a usable model input, with the fix."""
    if _is_missing(value) or (isinstance(value, float | np.floating) and math.isnan(value)):
        return f"missing value; the model needs a number in every feature column ({FIX_VALUE})"
    number = _to_float(value)
    if math.isnan(number):
        if isinstance(value, str) and value.strip().lower() in ("nan", "+nan", "-nan"):
            return f"value is NaN; the model needs a finite number ({FIX_VALUE})"
        return f"not a number: {value!r} ({FIX_VALUE})"
    return f"value {value!r} is infinite; the model needs a finite number ({FIX_VALUE})"


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


def _as_str(value: Any) -> str | None:
    if _is_missing(value):
        return None
    if isinstance(value, float) and math.isnan(value):
        return None
    return value.strip() if isinstance(value, str) else str(value)


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


class ConditionAssigner:
    """Operating-condition code per row from the bundle's ``conditions`` block."""

    def __init__(self, conditions: Mapping[str, Any]):
        self.mode = conditions["mode"]
        self.names = list(conditions["names"])
        self.column = conditions.get("column")
        self.settings = list(conditions.get("settings") or [])
        categories = [str(c) for c in conditions.get("categories") or []]
        self.lookup = {c: i for i, c in enumerate(categories)}
        self.numeric: dict[float, int] = {}
        for i, c in enumerate(categories):
            number = _to_float(c)
            if math.isfinite(number):
                self.numeric.setdefault(number, i)
        if self.mode == "cluster":
            self.center = np.asarray(conditions["center"], dtype=np.float64)
            self.scale = np.asarray(conditions["scale"], dtype=np.float64)
            self.centroids = np.asarray(conditions["centroids"], dtype=np.float64)

    def name(self, code: int) -> str:
        return self.names[code] if 0 <= code < len(self.names) else "unseen"

    def name_list(self, codes: np.ndarray) -> list[str]:
        """Condition name per code (``unseen`` for -1), (n,) -> list of n."""
        lookup = np.array([*self.names, "unseen"], dtype=object)
        codes = np.where((codes >= 0) & (codes < len(self.names)), codes, len(self.names))
        return lookup[codes].tolist()

    def category(self, value: Any) -> int:
        """Code of one condition-column value; -1 when it was not seen in training."""
        text = _as_str(value)
        if text is None:
            return -1
        code = self.lookup.get(text)
        if code is None:
            code = self.numeric.get(_to_float(text), -1)
        return code

    def codes(self, values: Sequence | None, settings: np.ndarray | None, n: int) -> np.ndarray:
        """Codes (n,) int64 from the condition column or the settings matrix (n, k)."""
        if self.mode == "single":
            return np.zeros(n, dtype=np.int64)
        if self.mode == "column":
            return np.array(_memo_map(self.category, values), dtype=np.int64)
        return self.nearest(settings)[0]

    def nearest(self, settings: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Nearest centroid (n,) int64 and its distance (n,) for settings (n, k), cluster mode.

        The distance is in scaled settings units (``(settings - center) / scale``);
        monitoring compares it with the training range to flag unseen conditions.
        """
        points = np.nan_to_num((np.asarray(settings, dtype=np.float64) - self.center) / self.scale)
        n = len(points)
        out = np.empty(n, dtype=np.int64)
        dist = np.empty(n, dtype=np.float64)
        for start in range(0, n, 65536):  # bounded memory, as in training
            p = points[start : start + 65536]
            d2 = ((p[:, None, :] - self.centroids[None]) ** 2).sum(-1)
            out[start : start + 65536] = np.argmin(d2, axis=1)
            dist[start : start + 65536] = np.sqrt(d2.min(axis=1))
        return out, dist


def normalize(
    x: np.ndarray, codes: np.ndarray, offset: np.ndarray, scale: np.ndarray, per_condition: bool
) -> np.ndarray:
    """``(x - offset[c]) / scale[c]`` in float64, cast to float32; x (n, C) -> (n, C).

    ``c`` is the row's condition code when ``per_condition`` and known, else the
    global (last) row of the statistics.
    """
    n_cond = offset.shape[0] - 1
    idx = np.where((codes >= 0) & (codes < n_cond), codes, n_cond)
    if not per_condition:
        idx = np.full_like(idx, n_cond)
    return ((x - offset[idx]) / scale[idx]).astype(np.float32)


@dataclass
class ParsedRows:
    """Rows parsed and normalized, (n,) each; ``ok`` is False where ``errors`` has the row.

    ``x`` is (n, C) float32, normalized (garbage where not ok); ``time`` float64
    seconds (datetime) or time units (number).
    """

    asset: list[str | None]
    time: np.ndarray
    x: np.ndarray
    code: np.ndarray
    ok: np.ndarray
    errors: dict[int, RowError]


class Preprocessor:
    """Parses and normalizes columnar rows the way the bundle's training pipeline did."""

    def __init__(self, bundle: Bundle):
        self.bundle = bundle
        self.features = bundle.feature_columns
        self.time_kind = bundle.input["time_kind"]
        self.conditions = ConditionAssigner(bundle.conditions)
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

    def parse(self, rows: Mapping[str, Sequence], first_row: int = 1) -> ParsedRows:
        """Parse columnar ``rows``; row ``i`` is reported as number ``first_row + i``."""
        self.check_columns(list(rows))
        lengths = {len(rows[c]) for c in self.required}
        if len(lengths) > 1:
            raise InputError(f"input columns differ in length ({sorted(lengths)}); fix the input")
        n = lengths.pop()
        errors: dict[int, RowError] = {}
        asset_col, time_col = self.bundle.asset_column, self.bundle.time_column
        assets = _memo_map(_as_str, rows[asset_col])

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
        settings = None
        cond = self.conditions
        if cond.mode == "cluster":
            settings = np.column_stack([parse_numbers(rows[c]) for c in cond.settings])
            for j, col in enumerate(cond.settings):
                flag(~np.isfinite(settings[:, j]), col, describe_bad_number)
        elif cond.mode == "column":
            missing = np.array([_as_str(v) is None for v in rows[cond.column]], dtype=bool)
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
        return ParsedRows(assets, time, x_norm, codes, ok, errors)
