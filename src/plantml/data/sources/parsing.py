"""Reading a user's own files: the CSV separator, timestamps with time zones, text in numbers.

- :func:`sniff_separator`: ``,``, ``;``, tab or ``|``, from the head of the file
  (:class:`csv.Sniffer`), so a European ``;`` export reads without configuration
  (with :func:`decimal_comma`, also its ``12,5`` numbers).
- :func:`time_zones` and :func:`utc_naive`: timestamps with a UTC offset are converted
  to UTC (training and the edge device measure time in UTC). A column that mixes
  offsets (a daylight-saving change) or mixes stamps with and without one is
  ambiguous to read without saying how: ``data.time_utc=true`` converts every stamp
  to UTC (stamps without an offset are taken as UTC), otherwise it is an error.
- :func:`numbers`: text cells as numbers, and which given cells were not numbers.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path

import pandas as pd

from plantml.errors import DataError

SEPARATORS = ",;\t|"
HEAD_BYTES = 64 * 1024
OFFSET = re.compile(r"(Z|[+-]\d{2}:?\d{2})$")
HAS_OFFSET = re.compile(r"(?:Z|[+-]\d{2}:?\d{2})$")
DECIMAL_COMMA = re.compile(r"^\s*[+-]?\d+,\d+(?:[eE][+-]?\d+)?\s*$")


def sniff_separator(path: Path) -> str | None:
    """The separator of a delimited text file from its head, or None when it cannot tell."""
    with open(path, encoding="utf-8-sig", errors="replace", newline="") as handle:
        head = handle.read(HEAD_BYTES)
    if "\n" in head and len(head) == HEAD_BYTES:
        head = head[: head.rfind("\n")]  # whole lines only
    try:
        return csv.Sniffer().sniff(head, delimiters=SEPARATORS).delimiter
    except csv.Error:
        return None


def decimal_comma(frame: pd.DataFrame) -> bool:
    """Do the text columns of a ``;``-separated file hold numbers written with a decimal comma?"""
    for col in frame.columns:
        values = frame[col]
        if values.dtype == object or pd.api.types.is_string_dtype(values):
            given = values.dropna().astype(str)
            if len(given) and given.str.match(DECIMAL_COMMA).mean() > 0.5:
                return True
    return False


def check_separator(frame: pd.DataFrame, path: Path, sep: str) -> None:
    """A DataError when a file read with ``sep`` came out as one column holding another separator."""
    if frame.shape[1] != 1:
        return
    header = str(frame.columns[0])
    other = next((s for s in SEPARATORS if s != sep and s in header), None)
    if other is not None:
        shown = {"\t": "\\t"}.get(other, other)
        raise DataError(
            f"{path} read as one column {header[:60]!r} with separator {sep!r}: it looks "
            f"{shown!r}-separated; set data.source.sep='{shown}' (or leave data.source.sep "
            "null to detect it)"
        )


def numbers(values: pd.Series) -> tuple[pd.Series, pd.Series]:
    """(values as float64 with non-numbers as NaN, mask of given cells that were not numbers)."""
    parsed = pd.to_numeric(values, errors="coerce")
    given = values.notna() & (values.astype(str).str.strip() != "")
    return parsed.astype("float64"), given & parsed.isna()


def _describe_offsets(text: pd.Series) -> str:
    found = text.str.extract(OFFSET, expand=False).fillna("none")
    counts = found.value_counts()
    return ", ".join(
        f"{'no offset' if k == 'none' else k} ({n} rows)" for k, n in counts.head(5).items()
    )


def time_zones(values: pd.Series, column: str, name: str, utc: bool) -> str | None:
    """``"mixed"``, ``"one"`` (every stamp has the same UTC offset) or None (none has one).

    Mixed offsets, or stamps with and without one, are a DataError unless ``utc``.
    """
    text = values.astype(str).str.strip()
    aware = text.str.contains(HAS_OFFSET)
    if not aware.any():
        return None
    if aware.all() and text.str.extract(OFFSET, expand=False).nunique() == 1:
        return "one"
    if not utc:
        raise DataError(
            f"time column {column!r} in {name} mixes time zones: {_describe_offsets(text)} "
            "(a daylight-saving change, or files from two sites?); set data.time_utc=true "
            "to convert every timestamp to UTC (stamps without an offset are taken as UTC)"
        )
    return "mixed"


def utc_naive(values: pd.Series) -> pd.Series:
    """Timestamps with a time zone as UTC without one (training and devices count in UTC)."""
    if isinstance(values.dtype, pd.DatetimeTZDtype):
        return values.dt.tz_convert("UTC").dt.tz_localize(None)
    return values
