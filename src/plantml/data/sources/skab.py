"""Skoltech Anomaly Benchmark (SKAB) v0.9: a water-pump testbed at 1 s.

``root`` holds one folder per experiment group (``anomaly-free/``,
``valve1/``, ``valve2/``, ``other/``); each ``.csv`` in a group is one
experiment, read as one asset named ``<group>/<file stem>`` (``valve1/3``).
Files are ``;``-separated with a ``datetime`` column, eight sensors and, in
the anomaly experiments, the 0/1 columns ``anomaly`` and ``changepoint``.
The anomaly-free file has no label columns: all its rows are normal.

SKAB's protocol (``data=skab``, ``split_by.method=head``): the first 400 rows
of each experiment file train, the rest is scored; the anomaly-free files
are all training data (:attr:`SKABSource.normal_assets`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from plantml.data.sources.base import Source, check_split
from plantml.data.table import SensorTable
from plantml.errors import ConfigError, DataError

TIME = "datetime"
SENSORS = [
    "Accelerometer1RMS",
    "Accelerometer2RMS",
    "Current",
    "Pressure",
    "Temperature",
    "Thermocouple",
    "Voltage",
    "Volume Flow RateRMS",
]
ANOMALY = "anomaly"
CHANGEPOINT = "changepoint"
ASSET = "asset"


class SKABSource(Source):
    """Reader for SKAB experiment folders.

    Args:
        root: folder holding the experiment groups (``anomaly-free/``, ``valve1/`` …).
        groups: group folders to read (default: every folder with ``.csv`` files).
        normal_groups: groups whose files are normal operation only; their
            assets are listed in :attr:`normal_assets` (the ``head`` split
            keeps them whole in train + val).
    """

    def __init__(
        self,
        root: str | Path,
        groups: list[str] | None = None,
        normal_groups: tuple[str, ...] | list[str] = ("anomaly-free",),
    ):
        self.root = Path(root).expanduser()
        self.groups = [str(g) for g in groups] if groups else None
        self.normal_groups = [str(g) for g in (normal_groups or [])]

    def present_groups(self) -> list[str]:
        """Group folders under ``root`` that hold at least one ``.csv``."""
        if not self.root.is_dir():
            parent = self.root.parent
            there = sorted(p.name for p in parent.iterdir())[:15] if parent.is_dir() else []
            raise DataError(
                f"SKAB folder {str(self.root)!r} does not exist"
                + (f" ({str(parent)!r} holds: {', '.join(there) or 'nothing'})" if there else "")
                + "; set data.root to the folder holding anomaly-free/, valve1/, …"
            )
        groups = sorted(p.name for p in self.root.iterdir() if p.is_dir() and any(p.glob("*.csv")))
        if not groups:
            present = sorted(p.name for p in self.root.iterdir())
            raise DataError(
                f"no SKAB experiment folders (with .csv files) in {str(self.root)!r}; it holds: "
                f"{', '.join(present) or 'nothing'}. Set data.root to SKAB's data folder"
            )
        return groups

    def selected_groups(self) -> list[str]:
        present = self.present_groups()
        if self.groups is None:
            return present
        unknown = [g for g in self.groups if g not in present]
        if unknown:
            raise ConfigError(
                f"unknown SKAB group(s) {unknown} (data.groups); the groups in "
                f"{str(self.root)!r} are: {', '.join(present)}"
            )
        return list(self.groups)

    def files(self, split: str = "train") -> list[Path]:
        check_split(split)
        out = []
        for group in self.selected_groups():
            out += sorted((self.root / group).glob("*.csv"), key=_natural)
        return out

    @property
    def normal_assets(self) -> list[str]:
        """Assets of the ``normal_groups`` that are read (normal operation only)."""
        return [_asset(path) for path in self.files() if path.parent.name in self.normal_groups]

    def _read(self, path: Path) -> pd.DataFrame:
        try:
            frame = pd.read_csv(path, sep=";")
        except pd.errors.EmptyDataError:
            raise DataError(f"{path} is empty; re-download SKAB") from None
        except (ValueError, OSError) as exc:
            raise DataError(f"cannot read {path}: {exc}") from None
        frame.columns = [str(c).strip() for c in frame.columns]
        missing = [c for c in (TIME, *SENSORS) if c not in frame.columns]
        if missing:
            raise DataError(
                f"{path} lacks the SKAB columns {missing} (it has: {', '.join(frame.columns)}); "
                "SKAB files are ';'-separated with datetime, 8 sensors, anomaly, changepoint. "
                "Remove the file from data.root or fix it"
            )
        try:
            frame[TIME] = pd.to_datetime(frame[TIME])
        except (ValueError, TypeError) as exc:
            raise DataError(f"{path}: the datetime column cannot be parsed ({exc})") from None
        for label in (ANOMALY, CHANGEPOINT):
            if label not in frame.columns:
                if path.parent.name not in self.normal_groups:
                    raise DataError(
                        f"{path} has no {label!r} column but its group "
                        f"{path.parent.name!r} is not in data.normal_groups "
                        f"({self.normal_groups}); add the group there if it is normal operation"
                    )
                frame[label] = 0
            frame[label] = frame[label].fillna(0).astype(np.int8)
        frame.insert(0, ASSET, _asset(path))
        return frame[[ASSET, TIME, *SENSORS, ANOMALY, CHANGEPOINT]]

    def load(self, split: str = "train") -> SensorTable:
        """All selected experiments in one table (the same for every ``split``)."""
        files = self.files(split)
        frame = pd.concat([self._read(p) for p in files], ignore_index=True)
        return SensorTable(
            frame=frame,
            asset_column=ASSET,
            time_column=TIME,
            sensor_columns=list(SENSORS),
            anomaly_column=ANOMALY,
            name=f"SKAB ({len(files)} files in {', '.join(self.selected_groups())})",
            time_unit="s",
        )


def _asset(path: Path) -> str:
    return f"{path.parent.name}/{path.stem}"


def _natural(path: Path) -> tuple:
    """``2.csv`` before ``10.csv``."""
    return (0, int(path.stem), "") if path.stem.isdigit() else (1, 0, path.stem)
