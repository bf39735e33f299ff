"""The canonical sensor table every source yields.

One long, tidy frame: one row per (asset, time), an asset id column, a time
column (a timestamp or a cycle number), sensor columns, optional operating
setting columns and optional label / event columns. A sensor sampled at a
lower rate than others has NaN on the rows where it was not read; cleaning
aligns such multi-rate data onto one grid.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd

from plantml.errors import DataError, did_you_mean


@dataclass
class SensorTable:
    """A sensor table and the roles of its columns.

    Attributes:
        frame: the data, one row per (asset, time).
        asset_column: asset (unit, pump, engine) identifier.
        time_column: cycle number or timestamp; increasing within an asset.
        sensor_columns: measured signals, used as model inputs.
        setting_columns: operating settings (load, speed, altitude); inputs to
            condition clustering, optionally model inputs.
        condition_column: a column that already names the operating
            condition (product type, load class), if any.
        failure_column: 0/1 event column, 1 on the row where the asset failed.
        maintenance_column: 0/1 event column, 1 where maintenance reset health.
        rul_column: remaining useful life given by the source (C-MAPSS test
            files), in time units; overrides the one computed from failures.
        anomaly_column: 0/1 per-row anomaly label.
        name: a short name used in logs and errors (a file name).
        time_unit: for timestamp time columns, the unit of durations (RUL,
            horizon) such as ``"h"``; ignored for numeric time.
        segment_column: rows with the same asset and segment form one
            contiguous series; windows never cross a segment boundary.
        notes: what a reader found worth a warning in the results (a feature that
            looks like a label, ...), one readable line each.
        asset_ids_given: False when the reader made the asset ids up (one per file, or
            one for the whole table): a device then needs no asset column either.
        non_numeric: per column, cells the source read as missing because they
            were not numbers (cleaning reports them).
    """

    frame: pd.DataFrame
    asset_column: str
    time_column: str
    sensor_columns: list[str]
    setting_columns: list[str] = field(default_factory=list)
    condition_column: str | None = None
    failure_column: str | None = None
    maintenance_column: str | None = None
    rul_column: str | None = None
    anomaly_column: str | None = None
    name: str = "table"
    time_unit: str = "h"
    segment_column: str | None = None
    notes: list[str] = field(default_factory=list)
    asset_ids_given: bool = True
    non_numeric: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.validate()

    @property
    def label_columns(self) -> list[str]:
        cols = [self.failure_column, self.maintenance_column, self.rul_column, self.anomaly_column]
        return [c for c in cols if c is not None]

    @property
    def is_timestamped(self) -> bool:
        return pd.api.types.is_datetime64_any_dtype(self.frame[self.time_column])

    def replace(self, **changes) -> SensorTable:
        """A copy with some fields changed (the frame is not copied)."""
        return replace(self, **changes)

    def validate(self) -> None:
        """Raise :class:`DataError` if the roles do not fit the frame."""
        frame = self.frame
        if len(frame) == 0:
            raise DataError(
                f"{self.name}: the table is empty (0 rows); check the file and any "
                "filters (data.groups, data.subset) that select its rows"
            )
        roles = {
            "asset_column": [self.asset_column],
            "time_column": [self.time_column],
            "sensor_columns": self.sensor_columns,
            "setting_columns": self.setting_columns,
            "condition_column": [self.condition_column],
            "failure_column": [self.failure_column],
            "maintenance_column": [self.maintenance_column],
            "rul_column": [self.rul_column],
            "anomaly_column": [self.anomaly_column],
            "segment_column": [self.segment_column],
        }
        columns = [str(c) for c in frame.columns]
        for role, names in roles.items():
            for col in names:
                if col is not None and col not in frame.columns:
                    raise DataError(
                        f"column {col!r} ({role}) not found in {self.name}; "
                        f"{did_you_mean(col, columns)}"
                    )
        if not self.sensor_columns:
            raise DataError(
                f"{self.name}: no sensor columns; set data.feature_columns to the numeric "
                f"columns to use (columns are: {', '.join(columns[:30])})"
            )
        for col in self.sensor_columns + self.setting_columns:
            if not pd.api.types.is_numeric_dtype(frame[col]):
                sample = frame[col].dropna().astype(str).head(3).tolist()
                raise DataError(
                    f"column {col!r} in {self.name} is not numeric (dtype {frame[col].dtype}, "
                    f"values like {sample}); remove it from data.feature_columns or fix the file"
                )
        self._check_events()
        if frame[self.asset_column].isna().any():
            n = int(frame[self.asset_column].isna().sum())
            raise DataError(
                f"{self.name}: {n} rows have no asset id in {self.asset_column!r}; "
                "fill or drop them before training"
            )
        if frame[self.time_column].isna().any():
            n = int(frame[self.time_column].isna().sum())
            raise DataError(
                f"{self.name}: {n} rows have no time in {self.time_column!r}; "
                "fill or drop them before training"
            )

    def _check_events(self) -> None:
        """Event columns (failure, maintenance, anomaly) hold 0, 1 or nothing, else a DataError.

        A failure label of 2 or "yes" is not silently read as a failure: the error names
        the values, how many rows hold them and the first rows (data rows from 1).
        """
        roles = {
            "failure_column": self.failure_column,
            "maintenance_column": self.maintenance_column,
            "anomaly_column": self.anomaly_column,
        }
        for role, col in roles.items():
            if col is None:
                continue
            values = self.frame[col]
            if pd.api.types.is_bool_dtype(values):
                continue
            numbers = pd.to_numeric(values, errors="coerce")
            bad = values.notna() & ~numbers.isin([0, 1])
            if not bad.any():
                continue
            shown = values[bad].astype(str).value_counts().head(5)
            rows = (np.flatnonzero(bad.to_numpy())[:5] + 1).tolist()
            raise DataError(
                f"{self.name}: column {col!r} ({role}) holds values outside {{0, 1}}: "
                + ", ".join(f"{v!r} ({n} rows)" for v, n in shown.items())
                + f", first on data rows {rows}; an event column is 1 on the row where the "
                "event happened and 0 (or empty) elsewhere; fix the labels, or for remaining "
                "life use data.label_kind=rul"
            )

    def durations(self, values: np.ndarray | pd.Series) -> np.ndarray:
        """Time values as float durations (numeric time as is; timestamps in ``time_unit``)."""
        values = np.asarray(values)
        if np.issubdtype(values.dtype, np.datetime64):
            return (
                values.astype("datetime64[ns]").astype(np.int64)
                / pd.Timedelta(1, unit=self.time_unit).value
            )
        return values.astype(np.float64)

    def assets(self) -> np.ndarray:
        return self.frame[self.asset_column].unique()
