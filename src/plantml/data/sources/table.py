"""A user's own CSV or Parquet file(s), with column roles set in config.

``data=table data.path=plant/*.parquet data.asset_column=pump data.time_column=ts
data.label_column=failed`` brings a new dataset with config alone.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd

from plantml.data.sources.base import Source, check_split, resolve_files
from plantml.data.sources.parsing import (
    check_separator,
    decimal_comma,
    numbers,
    parse_timestamps,
    sniff_separator,
)
from plantml.data.table import SensorTable
from plantml.errors import ConfigError, DataError, did_you_mean

log = logging.getLogger(__name__)
LABEL_KINDS = ("failure", "anomaly", "rul")
MOSTLY_NUMBERS = 0.5  # a text column with at least this share of numbers is a sensor with junk


class TableSource(Source):
    """CSV / Parquet reader.

    Args:
        path: a file or a glob (``data/*.csv``); files are concatenated.
        asset_column: asset id column. ``None`` treats the file as one asset.
        time_column: timestamp or cycle column; strings are parsed as timestamps.
        label_column: label column, read as ``label_kind``.
        label_kind: ``failure`` (0/1 event on the failure row), ``anomaly``
            (0/1 per row) or ``rul`` (remaining useful life per row).
        condition_column: a column naming the operating condition, if any.
        setting_columns: operating-setting columns (clustered into conditions
            when no condition column is given).
        feature_columns: sensor columns; default every other numeric column.
        maintenance_column: 0/1 maintenance event column, if any.
        sep: CSV separator (``None``: detected from the head of the file; ``,`` if unclear).
        time_unit: unit of durations for timestamp time (``h``, ``min``, ``D``).
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
        asset_column: str | None = "asset",
        time_column: str = "time",
        label_column: str | None = None,
        label_kind: str = "failure",
        condition_column: str | None = None,
        setting_columns: list[str] | None = None,
        feature_columns: list[str] | None = None,
        maintenance_column: str | None = None,
        sep: str | None = None,
        time_unit: str = "h",
        max_non_numeric: float = 0.01,
        time_utc: bool = False,
    ):
        if not path:
            raise ConfigError("data.path is not set; point it at a CSV or Parquet file (or a glob)")
        if label_kind not in LABEL_KINDS:
            raise ConfigError(
                f"unknown data.label_kind {label_kind!r}; use one of {', '.join(LABEL_KINDS)}"
            )
        self.path = str(path)
        self.asset_column = asset_column
        self.time_column = time_column
        self.label_column = label_column
        self.label_kind = label_kind
        self.condition_column = condition_column
        self.setting_columns = list(setting_columns or [])
        self.feature_columns = list(feature_columns) if feature_columns else None
        self.maintenance_column = maintenance_column
        self.sep = sep
        self.time_unit = time_unit
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

    def load(self, split: str = "train") -> SensorTable:
        check_split(split)
        files = self.files(split)
        frames = [self._read_one(p) for p in files]
        frame = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
        name = files[0].name if len(files) == 1 else f"{len(files)} files matching {self.path}"
        columns = [str(c) for c in frame.columns]
        asset = self.asset_column
        if asset is None:
            asset = "asset"
            frame = frame.assign(asset="asset_0")
        for role, col in (("data.asset_column", asset), ("data.time_column", self.time_column)):
            if col not in frame.columns:
                raise DataError(
                    f"column {col!r} ({role}) not found in {name}; {did_you_mean(col, columns)}"
                )
        time = frame[self.time_column]
        if time.dtype == object or pd.api.types.is_string_dtype(time):
            frame[self.time_column] = parse_timestamps(time, self.time_column, name, self.time_utc)
        elif isinstance(time.dtype, pd.DatetimeTZDtype):  # Parquet with a time zone: UTC
            frame[self.time_column] = time.dt.tz_convert("UTC").dt.tz_localize(None)
        roles = {
            "failure_column": self.label_column if self.label_kind == "failure" else None,
            "anomaly_column": self.label_column if self.label_kind == "anomaly" else None,
            "rul_column": self.label_column if self.label_kind == "rul" else None,
            "maintenance_column": self.maintenance_column,
            "condition_column": self.condition_column,
        }
        used = {asset, self.time_column, *self.setting_columns, *(c for c in roles.values() if c)}
        features = self.feature_columns
        if features is None:
            features = [c for c in frame.columns if c not in used and self._is_sensor(frame[c])]
            text = [c for c in frame.columns if c not in used and c not in features]
            if text:
                log.warning(
                    "%s: text columns %s are not used as features; set data.feature_columns to "
                    "choose the sensor columns yourself",
                    name,
                    text,
                )
        frame, coerced = self._coerce(frame, [*features, *self.setting_columns], name)
        return SensorTable(
            frame=frame,
            asset_column=asset,
            time_column=self.time_column,
            sensor_columns=list(features),
            setting_columns=self.setting_columns,
            name=name,
            time_unit=self.time_unit,
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
