"""A user's own CSV or Parquet file(s), with column roles set in config.

``data=table data.path=plant/*.parquet data.asset_column=pump data.time_column=ts
data.label_column=failed`` brings a new dataset with config alone.

Assets: from ``asset_column``; else a field ``{asset}`` of ``path_fields`` or a column
named ``asset``; else each file is its own asset when several files match
(``asset_from: file``); else the one file is one asset. Rows of two files never merge silently: the same (asset, time) in
two files is an error that names them.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import pandas as pd

from plantml.data.leakage import find_label_like
from plantml.data.sources.base import Source, check_split, resolve_files
from plantml.data.sources.parsing import (
    check_separator,
    decimal_comma,
    numbers,
    sniff_separator,
    time_zones,
    utc_naive,
)
from plantml.data.sources.path_fields import compile_pattern, path_fields
from plantml.data.table import SensorTable
from plantml.errors import ConfigError, DataError, did_you_mean

log = logging.getLogger(__name__)
LABEL_KINDS = ("failure", "anomaly", "rul")
ASSET_FROM = ("auto", "column", "file", "single")
UNIX_FORMATS = {"unix_s": "s", "unix_ms": "ms", "unix_us": "us", "unix_ns": "ns"}
LABEL_CHECKS = ("error", "warn", "off")
FILE_ASSET = "asset"  # the asset column's name when assets come from files
MOSTLY_NUMBERS = 0.5  # a text column with at least this share of numbers is a sensor with junk


class TableSource(Source):
    """CSV / Parquet reader.

    Args:
        path: a file or a glob (``data/*.csv``); files are concatenated.
        asset_column: asset id column; None: see ``asset_from``.
        time_column: timestamp or cycle column; None uses the row order within each
            file and asset (``0, 1, 2 ...``; in seconds with ``sampling_rate``).
        label_column: label column, read as ``label_kind``; None for unlabelled data.
        label_kind: ``failure`` (0/1 event on the failure row), ``anomaly``
            (0/1 per row) or ``rul`` (remaining useful life per row).
        condition_column: a column naming the operating condition, if any.
        setting_columns: operating-setting columns (clustered into conditions
            when no condition column is given).
        feature_columns: sensor columns; default every other numeric column (minus
            ``exclude_columns`` and path fields), checked for label-like columns.
        exclude_columns: columns never used as default features.
        maintenance_column: 0/1 maintenance event column, if any.
        sep: CSV separator (``None``: detected from the head of the file; ``,`` if unclear).
        time_unit: unit of durations for timestamp time (``h``, ``min``, ``D``).
        asset_from: ``auto`` (the rule in the module doc), ``column``, ``file`` (each
            file is an asset; with ``asset_column`` too, ``<file>/<value>``) or
            ``single`` (all rows one asset).
        path_fields: a pattern such as ``'{state}{speed:d}hz{load:d}.csv'`` whose fields
            become columns (:mod:`plantml.data.sources.path_fields`).
        time_format: how to parse ``time_column``: a strftime pattern
            (``%d.%m.%Y %H:%M``), ``unix_s`` / ``unix_ms`` (epoch numbers), or None
            (numbers as they are, text parsed as ISO-like timestamps).
        sampling_rate: rows per second when ``time_column`` is None.
        label_check: what a label-like default feature does: ``error``, ``warn`` or ``off``.
        time_utc: convert every timestamp to UTC, also in a column that mixes UTC
            offsets or stamps with and without one (taken as UTC); without it such a
            column is an error (see :mod:`plantml.data.sources.parsing`).
        max_non_numeric: the largest share of a sensor or setting column's cells that may
            be non-numeric text (``ERR``, ``#VALUE!``); such cells are read as missing,
            counted per column and reported by cleaning. Above it the load fails.
    """

    def __init__(
        self,
        path: str,
        asset_column: str | None = None,
        time_column: str | None = "time",
        label_column: str | None = None,
        label_kind: str = "failure",
        condition_column: str | None = None,
        setting_columns: list[str] | None = None,
        feature_columns: list[str] | None = None,
        exclude_columns: list[str] | None = None,
        maintenance_column: str | None = None,
        sep: str | None = None,
        time_unit: str = "h",
        asset_from: str = "auto",
        path_fields: str | None = None,
        time_format: str | None = None,
        sampling_rate: float | None = None,
        label_check: str = "error",
        time_utc: bool = False,
        max_non_numeric: float = 0.01,
    ):
        if not path:
            raise ConfigError("data.path is not set; point it at a CSV or Parquet file (or a glob)")
        for key, value, choices in (
            ("label_kind", label_kind, LABEL_KINDS),
            ("asset_from", asset_from, ASSET_FROM),
            ("label_check", label_check, LABEL_CHECKS),
        ):
            if value not in choices:
                raise ConfigError(f"unknown data.{key} {value!r}; use one of {', '.join(choices)}")
        if asset_from == "column" and not asset_column:
            raise ConfigError("data.asset_from=column needs data.asset_column")
        if sampling_rate is not None and not float(sampling_rate) > 0:
            raise ConfigError(
                f"data.sampling_rate must be > 0 rows per second, got {sampling_rate}"
            )
        if path_fields is not None:
            compile_pattern(path_fields)  # a bad pattern fails before any file is read
        self.path = str(path)
        self.asset_column = asset_column
        self.time_column = time_column
        self.label_column = label_column
        self.label_kind = label_kind
        self.condition_column = condition_column
        self.setting_columns = list(setting_columns or [])
        self.feature_columns = list(feature_columns) if feature_columns else None
        self.exclude_columns = list(exclude_columns or [])
        self.maintenance_column = maintenance_column
        self.sep = sep
        self.time_unit = time_unit
        self.asset_from = asset_from
        self.path_fields = path_fields
        self.time_format = time_format
        self.sampling_rate = None if sampling_rate is None else float(sampling_rate)
        self.label_check = label_check
        self.time_utc = bool(time_utc)
        if not 0 <= float(max_non_numeric) <= 1:
            raise ConfigError(f"data.max_non_numeric must be in [0, 1], got {max_non_numeric}")
        self.max_non_numeric = float(max_non_numeric)

    def files(self, split: str = "train") -> list[Path]:
        return resolve_files(
            self.path, "data file", "Set data.path to a .csv or .parquet file or a glob of them."
        )

    def _read_one(self, path: Path) -> pd.DataFrame:
        suffix = "".join(path.suffixes).lower()
        try:
            if ".parquet" in suffix or suffix.endswith(".pq"):
                return pd.read_parquet(path)
            if ".csv" in suffix or ".txt" in suffix:
                sep = self.sep or sniff_separator(path) or ","
                frame = pd.read_csv(path, sep=sep)
                check_separator(frame, path, sep)
                if sep == ";" and decimal_comma(frame):  # 12,5 in a European export
                    frame = pd.read_csv(path, sep=sep, decimal=",")
                return frame
        except pd.errors.EmptyDataError:
            raise DataError(f"{path} is empty (no header, no rows)") from None
        except (ValueError, OSError) as exc:
            raise DataError(f"cannot read {path}: {exc}") from None
        raise DataError(f"{path}: unsupported file type {suffix!r}; use .csv or .parquet")

    # -- assets and time -----------------------------------------------------------------
    def _asset_mode(self, files: list[Path], fields: list[str], columns) -> str:
        if self.asset_from != "auto":
            return self.asset_from
        if self.asset_column:
            return "column"
        if "asset" in fields or FILE_ASSET in columns:
            return "field"  # a path field or a plain column named asset
        return "file" if len(files) > 1 else "single"

    def _read(self, files: list[Path]) -> tuple[pd.DataFrame, np.ndarray, list[str]]:
        """All files concatenated, each row's file index, and the path-field column names."""
        fields = path_fields(self.path_fields, files) if self.path_fields else [{}] * len(files)
        frames, file_index = [], []
        for i, (path, values) in enumerate(zip(files, fields, strict=True)):
            frame = self._read_one(path)
            clash = [k for k in values if k in frame.columns]
            if clash:
                raise DataError(
                    f"data.path_fields adds the column(s) {clash}, which {path.name} already has; "
                    "rename the fields in the pattern"
                )
            frames.append(frame.assign(**values))
            file_index.append(np.full(len(frame), i, dtype=np.int64))
        frame = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
        return frame, np.concatenate(file_index), list(fields[0])

    def _set_assets(
        self, frame: pd.DataFrame, files: list[Path], file_of_row: np.ndarray, mode: str
    ) -> tuple[pd.DataFrame, str]:
        columns = [str(c) for c in frame.columns]
        if mode in ("column", "field"):
            col = self.asset_column or "asset"
            if col not in frame.columns:
                raise DataError(
                    f"column {col!r} (data.asset_column) not found in {self._name(files)}; "
                    f"{did_you_mean(col, columns)}. Without an asset column, each file is its "
                    "own asset (data.asset_column=null)"
                )
            return frame, col
        if mode == "single":
            return frame.assign(**{FILE_ASSET: Path(files[0]).name.split(".")[0]}), FILE_ASSET
        names = np.array(file_asset_names(files), dtype=object)[file_of_row]
        if self.asset_column:
            if self.asset_column not in frame.columns:
                raise DataError(
                    f"column {self.asset_column!r} (data.asset_column) not found in "
                    f"{self._name(files)}; {did_you_mean(self.asset_column, columns)}"
                )
            names = names + "/" + frame[self.asset_column].astype(str).to_numpy()
            return frame.assign(**{self.asset_column: names}), self.asset_column
        if FILE_ASSET in frame.columns:
            raise DataError(
                f"{self._name(files)} has a column {FILE_ASSET!r} but assets come from the files "
                f"(data.asset_from={self.asset_from}); set data.asset_column={FILE_ASSET} to use it"
            )
        return frame.assign(**{FILE_ASSET: names}), FILE_ASSET

    def _set_time(
        self, frame: pd.DataFrame, asset: str, file_of_row: np.ndarray, name: str
    ) -> tuple[pd.DataFrame, str]:
        if self.time_column is None:
            order = (
                pd.Series(file_of_row).groupby([file_of_row, frame[asset].to_numpy()]).cumcount()
            )
            time = order.to_numpy(np.float64)
            if self.sampling_rate:
                time = time / self.sampling_rate
            col = "time" if "time" not in frame.columns else "_row_time"
            return frame.assign(**{col: time}), col
        if self.time_column not in frame.columns:
            raise DataError(
                f"column {self.time_column!r} (data.time_column) not found in {name}; "
                f"{did_you_mean(self.time_column, [str(c) for c in frame.columns])}. Without a "
                "time column, set data.time_column=null to use the row order"
            )
        frame[self.time_column] = parse_time(
            frame[self.time_column], self.time_format, name, self.time_utc
        )
        return frame, self.time_column

    @staticmethod
    def _name(files: list[Path]) -> str:
        return files[0].name if len(files) == 1 else f"{len(files)} files"

    def load(self, split: str = "train") -> SensorTable:
        check_split(split)
        files = self.files(split)
        frame, file_of_row, fields = self._read(files)
        name = files[0].name if len(files) == 1 else f"{len(files)} files matching {self.path}"
        mode = self._asset_mode(files, fields, frame.columns)
        frame, asset = self._set_assets(frame, files, file_of_row, mode)
        frame, time = self._set_time(frame, asset, file_of_row, name)
        if len(files) > 1:
            check_no_cross_file_merge(frame, asset, time, file_of_row, files)
        roles = {
            "failure_column": self.label_column if self.label_kind == "failure" else None,
            "anomaly_column": self.label_column if self.label_kind == "anomaly" else None,
            "rul_column": self.label_column if self.label_kind == "rul" else None,
            "maintenance_column": self.maintenance_column,
            "condition_column": self.condition_column,
        }
        used = {asset, time, *self.setting_columns, *(c for c in roles.values() if c)}
        notes: list[str] = []
        features = self.feature_columns
        if features is None:
            skip = used | set(self.exclude_columns) | set(fields)
            features = [c for c in frame.columns if c not in skip and self._is_sensor(frame[c])]
            text = [c for c in frame.columns if c not in skip and c not in features]
            if text:
                log.warning(
                    "%s: text columns %s are not used as features; set data.feature_columns to "
                    "choose the sensor columns yourself",
                    name,
                    text,
                )
            frame, coerced = self._coerce(frame, [*features, *self.setting_columns], name)
            features, notes = self._check_label_like(frame, features, name)
        else:
            frame, coerced = self._coerce(frame, [*features, *self.setting_columns], name)
        log.info("features (%d): %s", len(features), ", ".join(map(str, features)))
        return SensorTable(
            frame=frame,
            asset_column=asset,
            time_column=time,
            sensor_columns=list(features),
            setting_columns=self.setting_columns,
            name=name,
            time_unit=self.time_unit,
            notes=notes,
            asset_ids_given=mode in ("column", "field") or bool(self.asset_column),
            non_numeric=coerced,
            **roles,
        )

    @staticmethod
    def _is_sensor(values: pd.Series) -> bool:
        """Numeric, or text that is mostly numbers (a sensor column with a few junk cells)."""
        if pd.api.types.is_numeric_dtype(values):
            return True
        if not (values.dtype == object or pd.api.types.is_string_dtype(values)):
            return False
        parsed, junk = numbers(values)
        return parsed.notna().sum() >= MOSTLY_NUMBERS * max(
            int(parsed.notna().sum() + junk.sum()), 1
        )

    def _coerce(self, frame: pd.DataFrame, columns: list[str], name: str):
        """Text cells of sensor/setting columns become NaN; (frame, count per column).

        A column with more than ``max_non_numeric`` of its given cells not numeric
        is a :class:`DataError` naming the column, the share and examples.
        """
        counts: dict[str, int] = {}
        for col in columns:
            if col not in frame.columns or pd.api.types.is_numeric_dtype(frame[col]):
                continue
            values = frame[col]
            if not (values.dtype == object or pd.api.types.is_string_dtype(values)):
                continue  # timestamps, categories: SensorTable says they are not numeric
            parsed, junk = numbers(values)
            given = int(parsed.notna().sum() + junk.sum())
            share = junk.sum() / max(given, 1)
            if share > self.max_non_numeric:
                examples = values[junk].astype(str).drop_duplicates().head(3).tolist()
                rows = (junk.to_numpy().nonzero()[0][:3] + 1).tolist()
                raise DataError(
                    f"column {col!r} in {name} is not numeric ({int(junk.sum())} of {given} cells, "
                    f"{share:.1%}, are not numbers, e.g. {examples} on data rows {rows}: more than "
                    f"data.max_non_numeric={self.max_non_numeric:g}); fix the file, remove the "
                    "column from data.feature_columns, or raise data.max_non_numeric to read "
                    "such cells as missing"
                )
            frame = frame.assign(**{col: parsed})
            counts[col] = int(junk.sum())
        if any(counts.values()):
            log.warning(
                "%s: read %d non-numeric cells as missing (%s); cleaning fills or drops them",
                name,
                sum(counts.values()),
                ", ".join(f"{c}: {n}" for c, n in counts.items() if n),
            )
        return frame, {c: n for c, n in counts.items() if n}

    def _check_label_like(
        self, frame: pd.DataFrame, features: list[str], name: str
    ) -> tuple[list[str], list[str]]:
        """Refuse (or warn about) default features that look like labels; returns the notes."""
        if self.label_check == "off":
            return features, []
        found = find_label_like(frame, features, self.label_column, self.label_kind)
        strong = [f for f in found if f.strong]
        if strong and self.label_check == "error":
            lines = "; ".join(f"{f.column!r}: {f.reason}" for f in strong)
            cols = ",".join(f.column for f in strong)
            raise DataError(
                f"{name}: default features that look like labels would leak the answer into "
                f"the model ({lines}). Leave them out with data.exclude_columns=[{cols}], or "
                "list the inputs with data.feature_columns=[...] (or data.label_check=warn)"
            )
        notes = [f"feature {f.column!r} looks like a label: {f.reason}" for f in found]
        for note in notes:
            log.warning("%s (leave it out with data.exclude_columns)", note)
        return features, notes


def file_asset_names(files: list[Path]) -> list[str]:
    """An asset name per file: its path below the files' common folder, without suffixes."""
    paths = [Path(f).resolve() for f in files]
    root = Path(os.path.commonpath([p.parent for p in paths]))
    rel = [p.relative_to(root) for p in paths]
    return [r.with_name(r.name.split(".")[0]).as_posix() for r in rel]


def parse_time(
    values: pd.Series, time_format: str | None, name: str, utc: bool = False
) -> pd.Series:
    """The time column as numbers or timestamps; a value that cannot be parsed is an error
    naming its row (counted from 1 over the concatenated files) and the format to use.

    Timestamps with a UTC offset come back in UTC without a time zone; a column that
    mixes offsets is an error unless ``utc`` (:mod:`plantml.data.sources.parsing`).
    """
    column = values.name
    if time_format in UNIX_FORMATS:
        seconds = pd.to_numeric(values, errors="coerce")
        parsed = pd.to_datetime(seconds, unit=UNIX_FORMATS[time_format], errors="coerce")
    elif time_format:
        parsed = pd.to_datetime(values, format=time_format, errors="coerce", utc=utc)
    elif pd.api.types.is_numeric_dtype(values) or pd.api.types.is_datetime64_any_dtype(values):
        return utc_naive(values)  # Parquet timestamps with a time zone: in UTC
    else:
        zones = time_zones(values, column, name, utc)  # mixed offsets without utc: an error
        as_utc = utc or zones is not None
        mixed = "mixed" if zones == "mixed" else None
        try:
            parsed = pd.to_datetime(values, utc=as_utc, format=mixed)
        except (ValueError, TypeError) as exc:
            parsed = pd.to_datetime(values, errors="coerce", format="mixed", utc=as_utc)
            if not parsed.notna().any():
                raise DataError(
                    f"time column {column!r} in {name} is neither numeric nor a timestamp "
                    f"({exc}); set data.time_format (a strftime pattern such as "
                    "'%d.%m.%Y %H:%M', or unix_s / unix_ms), or choose another data.time_column"
                ) from None
    bad = parsed.isna() & values.notna()
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise DataError(
            f"time column {column!r} in {name}: {int(bad.sum())} value(s) cannot be parsed"
            + (f" with data.time_format={time_format!r}" if time_format else "")
            + f", first {values.iloc[row]!r} on data row {row + 1}; fix the values or set "
            "data.time_format (a strftime pattern, or unix_s / unix_ms)"
        )
    return utc_naive(parsed)


def check_no_cross_file_merge(
    frame: pd.DataFrame, asset: str, time: str, file_of_row: np.ndarray, files: list[Path]
) -> None:
    """Fail when two files hold rows of the same asset at the same time (they would merge)."""
    keys = frame[[asset, time]].assign(_file=file_of_row)
    dup = keys.duplicated([asset, time], keep=False)
    if not dup.any():
        return
    spans = keys[dup].groupby([asset, time])["_file"].nunique()
    clash = spans[spans > 1]
    if clash.empty:
        return  # duplicates inside one file: cleaning's dedupe handles (and reports) them
    a, t = (v.item() if isinstance(v, np.generic) else v for v in clash.index[0])
    in_files = sorted({files[i].name for i in keys[dup & (keys[asset] == a)]["_file"].unique()})
    raise DataError(
        f"{len(clash)} (asset, time) pairs appear in more than one file (first: asset {a!r} at "
        f"{t!r} in {', '.join(in_files[:4])}); their rows would be merged into one. If each file "
        "is a separate recording, make each file its own asset (data.asset_from=file); "
        "otherwise fix the asset ids"
    )
