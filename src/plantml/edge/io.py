"""Tables in and out: CSV with the standard library, Parquet with pyarrow (optional).

Tables are columnar: ``{column: sequence}`` with one entry per row. CSV
values stay strings (the runtime parses and checks them row by row).
"""

from __future__ import annotations

import csv
import sys
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from plantml.edge.preprocess import InputError, RowError

PARQUET = (".parquet", ".pq")


def _check_file(path: Path) -> None:
    if not path.is_file():
        raise InputError(f"input file {path} not found; pass an existing .csv or .parquet file")


def _csv_lines(path: str | Path, rejects: bool = False) -> Iterator[list[str] | RowError]:
    """The header, then the fields of each non-blank line (short lines padded).

    A line with more fields than the header is an :class:`InputError`, or with
    ``rejects`` a :class:`RowError` in its place (the caller skips that line).
    """
    path = Path(path)
    _check_file(path)
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if not header:
            raise InputError(f"{path} is empty; a CSV with a header line is needed")
        yield header
        width = len(header)
        row = 0
        for fields in reader:
            if not fields:
                continue
            row += 1
            if len(fields) > width:
                problem = (
                    f"line {reader.line_num} has {len(fields)} fields but the header has {width}"
                )
                if not rejects:
                    raise InputError(f"{path} {problem}; fix the line (a stray delimiter?)")
                yield RowError(row, None, None, f"{problem} (a stray delimiter?); line skipped")
                continue
            yield fields + [""] * (width - len(fields))


def iter_csv(path: str | Path, rejects: bool = False) -> Iterator[dict[str, str] | RowError]:
    """Rows of a CSV file with a header, one dict at a time (for streaming).

    With ``rejects``, a line that cannot be a row comes as a :class:`RowError` instead
    of ending the file with an :class:`InputError`.
    """
    lines = _csv_lines(path, rejects)
    header = next(lines)
    for fields in lines:
        yield fields if isinstance(fields, RowError) else dict(zip(header, fields, strict=True))


def read_header(path: str | Path) -> list[str]:
    """The column names of a .csv or .parquet file (without reading its rows)."""
    path = Path(path)
    if path.suffix.lower() in PARQUET:
        return list(_parquet_file(path).schema_arrow.names)
    if path.suffix.lower() not in (".csv", ".txt"):
        raise InputError(f"cannot read {path.name}: use a .csv or .parquet file")
    return list(next(_csv_lines(path)))


def read_csv(path: str | Path) -> dict[str, list[str]]:
    """A CSV file with a header as columns of strings.

    Blank lines are skipped; a short line is padded with empty values (they
    are rejected as missing); a line with more fields than the header is an error.
    """
    lines = _csv_lines(path)
    header = next(lines)
    cols: list[list[str]] = [[] for _ in header]
    for fields in lines:
        for col, value in zip(cols, fields, strict=True):
            col.append(value)
    return dict(zip(header, cols, strict=True))


def _parquet_file(path: Path):
    """``pyarrow.parquet.ParquetFile`` of an existing file; InputError without pyarrow."""
    _check_file(path)
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise InputError(
            f"reading {path.name} needs pyarrow, which is not installed; "
            "pip install 'plantml[parquet]', or convert the file to CSV"
        ) from None
    return pq.ParquetFile(path)


def read_parquet(path: str | Path) -> dict[str, Any]:
    """A Parquet file as columns: timestamps as numpy datetime64 arrays (UTC), others as lists."""
    import pyarrow as pa

    # ParquetFile.read without pandas metadata, to_pylist and the int64 cast for timestamps
    # keep pandas out (pq.read_table and to_numpy import it when it is installed)
    table = _parquet_file(Path(path)).read(use_pandas_metadata=False)
    out: dict[str, Any] = {}
    for name, column in zip(table.column_names, table.columns, strict=True):
        if pa.types.is_timestamp(column.type):
            ints = column.cast(pa.int64()).to_pylist()
            nat = np.iinfo(np.int64).min  # NaT
            values = np.array([nat if v is None else v for v in ints], dtype=np.int64)
            out[name] = values.view(f"datetime64[{column.type.unit}]")
        else:
            out[name] = column.to_pylist()
    return out


def read_table(path: str | Path) -> dict[str, Any]:
    """A .csv or .parquet file as columns."""
    path = Path(path)
    if path.suffix.lower() in PARQUET:
        return read_parquet(path)
    if path.suffix.lower() in (".csv", ".txt"):
        return read_csv(path)
    raise InputError(f"cannot read {path.name}: use a .csv or .parquet file")


def iter_rows(path: str | Path, rejects: bool = False) -> Iterator[dict[str, Any] | RowError]:
    """Rows of a .csv (read lazily) or .parquet file, one dict at a time.

    ``rejects``: a CSV line that cannot be a row comes as a :class:`RowError`.
    """
    if Path(path).suffix.lower() not in PARQUET:
        if Path(path).suffix.lower() not in (".csv", ".txt"):
            raise InputError(f"cannot read {Path(path).name}: use a .csv or .parquet file")
        yield from iter_csv(path, rejects)
        return
    columns = read_parquet(path)
    names = list(columns)
    n = len(columns[names[0]]) if names else 0
    for i in range(n):
        yield {c: columns[c][i] for c in names}


def _text(values: Sequence | np.ndarray) -> list[str]:
    if isinstance(values, np.ndarray) and values.dtype.kind == "f":
        return values.astype(str).tolist()  # shortest repr that round-trips the dtype
    return ["" if v is None else str(v) for v in values]


def format_row(values: Sequence[Any]) -> list[str]:
    """One output row as strings (float32 values in their shortest form)."""
    return [str(np.float32(v)) if isinstance(v, float | np.floating) else str(v) for v in values]


def write_csv(path: str | Path, columns: Mapping[str, Sequence]) -> int:
    """Write columns to a CSV file with a header (``-`` writes to stdout); returns rows written."""
    names = list(columns)
    texts = [_text(columns[c]) for c in names]
    n = len(texts[0]) if texts else 0
    if str(path) == "-":
        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow(names)
        writer.writerows(zip(*texts, strict=True))
        return n
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(names)
        writer.writerows(zip(*texts, strict=True))
    return n
