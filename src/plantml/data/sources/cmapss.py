"""NASA C-MAPSS turbofan run-to-failure data (FD001-FD004).

Files in ``root``: ``train_FDxxx.txt``, ``test_FDxxx.txt`` and ``RUL_FDxxx.txt``,
each plain or gzipped (``.txt.gz``). Whitespace separated, no header, 26
columns: unit, cycle, three operating settings and 21 sensors. Each training
unit runs to failure (the failure is its last cycle); each test unit stops
some cycles before failure and the RUL file gives its true RUL at its last
cycle, in unit order.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from plantml.data.sources.base import Source, check_split
from plantml.data.table import SensorTable
from plantml.errors import ConfigError, DataError

SUBSETS = {"FD001": 1, "FD002": 6, "FD003": 1, "FD004": 6}  # operating conditions per subset
SETTINGS = [f"op_setting_{i}" for i in range(1, 4)]
SENSORS = [f"sensor_{i}" for i in range(1, 22)]
COLUMNS = ["unit", "cycle", *SETTINGS, *SENSORS]


class CMAPSSSource(Source):
    """Reader for one C-MAPSS subset.

    Args:
        root: folder holding the files.
        subset: ``FD001`` … ``FD004``.
        sensors: sensor columns to keep (default: all 21; cleaning drops the
            constant ones).
    """

    has_official_test = True

    def __init__(self, root: str | Path, subset: str = "FD001", sensors: list[str] | None = None):
        subset = str(subset).upper()
        if subset not in SUBSETS:
            raise ConfigError(
                f"unknown C-MAPSS subset {subset!r}; use one of {', '.join(SUBSETS)} (data.subset)"
            )
        self.root = Path(root).expanduser()
        self.subset = subset
        self.sensors = list(sensors) if sensors else list(SENSORS)
        unknown = [s for s in self.sensors if s not in SENSORS]
        if unknown:
            raise ConfigError(f"unknown C-MAPSS sensors {unknown}; names are sensor_1 … sensor_21")

    @property
    def n_conditions(self) -> int:
        return SUBSETS[self.subset]

    def _file(self, kind: str) -> Path:
        for name in (f"{kind}_{self.subset}.txt", f"{kind}_{self.subset}.txt.gz"):
            path = self.root / name
            if path.is_file():
                return path
        if not self.root.is_dir():
            raise DataError(
                f"C-MAPSS folder {str(self.root)!r} does not exist; set data.root to the folder "
                f"holding {kind}_{self.subset}.txt (or .txt.gz)"
            )
        present = sorted(p.name for p in self.root.iterdir())
        extra = ""
        if kind in ("test", "RUL"):
            extra = (
                " The official test set ships as test_FDxxx.txt with RUL_FDxxx.txt; without "
                "them evaluate on held-out training units with data.split=val."
            )
        raise DataError(
            f"{kind}_{self.subset}.txt[.gz] not found in {str(self.root)!r} "
            f"(it holds: {', '.join(present) or 'nothing'}).{extra}"
        )

    def files(self, split: str = "train") -> list[Path]:
        if check_split(split) == "test":
            return [self._file("test"), self._file("RUL")]
        return [self._file("train")]

    def _read(self, path: Path) -> pd.DataFrame:
        try:
            frame = pd.read_csv(path, sep=r"\s+", header=None, engine="c")
        except pd.errors.EmptyDataError:
            raise DataError(f"{path} is empty; re-download the C-MAPSS files") from None
        if frame.shape[1] != len(COLUMNS):
            raise DataError(
                f"{path} has {frame.shape[1]} columns, C-MAPSS files have 26 "
                "(unit, cycle, 3 settings, 21 sensors); is this the right file?"
            )
        frame.columns = COLUMNS
        frame["unit"] = frame["unit"].astype(np.int64)
        frame["cycle"] = frame["cycle"].astype(np.int64)
        return frame

    def load(self, split: str = "train") -> SensorTable:
        if check_split(split) == "test":
            frame = self._read(self._file("test"))
            frame["rul"] = self._test_rul(frame)
            extra = {"rul_column": "rul"}
        else:
            frame = self._read(self._file("train"))
            last = frame.groupby("unit")["cycle"].transform("max")
            frame["failure"] = (frame["cycle"] == last).astype(np.int8)
            extra = {"failure_column": "failure"}
        return SensorTable(
            frame=frame[["unit", "cycle", *SETTINGS, *self.sensors, *extra.values()]],
            asset_column="unit",
            time_column="cycle",
            sensor_columns=list(self.sensors),
            setting_columns=list(SETTINGS),
            name=f"{split if split == 'test' else 'train'}_{self.subset}",
            **extra,
        )

    def _test_rul(self, frame: pd.DataFrame) -> np.ndarray:
        """Per-row true RUL of the test units: the file's RUL at the last cycle, counted back."""
        path = self._file("RUL")
        truth = pd.read_csv(path, sep=r"\s+", header=None).iloc[:, 0].to_numpy(dtype=float)
        units = np.sort(frame["unit"].unique())
        if len(truth) != len(units):
            raise DataError(
                f"{path.name} has {len(truth)} RUL values but the test file has {len(units)} "
                "units; the two files must come from the same subset"
            )
        last = frame.groupby("unit")["cycle"].transform("max").to_numpy()
        rul_at_last = pd.Series(truth, index=units).reindex(frame["unit"]).to_numpy()
        return rul_at_last + (last - frame["cycle"].to_numpy())
