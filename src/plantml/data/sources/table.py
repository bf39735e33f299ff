"""A user's own CSV or Parquet file(s), with column roles set in config.

``data=table data.path=plant/*.parquet data.asset_column=pump data.time_column=ts
data.label_column=failed`` brings a new dataset with config alone.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from plantml.data.sources.base import Source, check_split, resolve_files
from plantml.data.table import SensorTable
from plantml.errors import ConfigError, DataError, did_you_mean

LABEL_KINDS = ("failure", "anomaly", "rul")


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
        sep: CSV separator (``None`` sniffs it).
        time_unit: unit of durations for timestamp time (``h``, ``min``, ``D``).
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
        sep: str | None = ",",
        time_unit: str = "h",
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
                return pd.read_csv(path, sep=self.sep, engine="python" if self.sep is None else "c")
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
            try:
                frame[self.time_column] = pd.to_datetime(time)
            except (ValueError, TypeError) as exc:
                raise DataError(
                    f"time column {self.time_column!r} in {name} is neither numeric nor a "
                    f"timestamp ({exc}); fix the values or choose another data.time_column"
                ) from None
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
            features = [
                c
                for c in frame.columns
                if c not in used and pd.api.types.is_numeric_dtype(frame[c])
            ]
        return SensorTable(
            frame=frame,
            asset_column=asset,
            time_column=self.time_column,
            sensor_columns=list(features),
            setting_columns=self.setting_columns,
            name=name,
            time_unit=self.time_unit,
            **roles,
        )
