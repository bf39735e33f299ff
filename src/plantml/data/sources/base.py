"""The one abstract source every dataset reader stands behind."""

from __future__ import annotations

import abc
import glob
import hashlib
from pathlib import Path

from plantml.data.table import SensorTable
from plantml.errors import ConfigError, DataError

SPLITS = ("train", "val", "test")


class Source(abc.ABC):
    """A dataset reader: yields the canonical :class:`SensorTable`.

    ``load("train")`` returns the data the pipeline splits into train / val /
    test by asset. A source with an official, separately shipped test set
    (C-MAPSS) returns it from ``load("test")``; other sources return the same
    table for every split and let the pipeline hold assets out.
    """

    #: True when ``load("test")`` returns an official test set with its own truth.
    has_official_test: bool = False
    #: How to get more data from this source, for errors about too few windows or failures.
    more_data_hint: str = "add assets or longer records to the data"

    @abc.abstractmethod
    def load(self, split: str = "train") -> SensorTable:
        """Read the data for ``split`` ("train", "val" or "test")."""

    def files(self, split: str = "train") -> list[Path]:
        """Files read for ``split`` (for the data fingerprint); empty for generated data."""
        return []

    def fingerprint(self, split: str = "train") -> str:
        """SHA-256 over the bytes of the files read (or of the generator's arguments)."""
        digest = hashlib.sha256()
        files = self.files(split)
        if not files:
            params = {k: v for k, v in vars(self).items() if not k.startswith("_")}
            digest.update(f"{type(self).__name__}{sorted(params.items())!r}".encode())
        for path in files:
            digest.update(path.name.encode())
            with open(path, "rb") as handle:
                for block in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(block)
        return digest.hexdigest()


def check_split(split: str) -> str:
    if split not in SPLITS:
        raise ConfigError(f"unknown split {split!r}; use one of {', '.join(SPLITS)} (data.split)")
    return split


def resolve_files(pattern: str | Path, what: str, hint: str) -> list[Path]:
    """Expand a path or glob into existing files, or raise a DataError with ``hint``."""
    pattern = str(Path(pattern).expanduser())
    matches = sorted(Path(p) for p in glob.glob(pattern)) if glob.has_magic(pattern) else []
    if not glob.has_magic(pattern) and Path(pattern).is_file():
        matches = [Path(pattern)]
    if not matches:
        parent = Path(pattern).parent
        if not parent.exists():
            where = f"the folder {str(parent)!r} does not exist"
        else:
            present = sorted(p.name for p in parent.iterdir())[:15]
            where = f"{str(parent)!r} holds: {', '.join(present) or 'nothing'}"
        raise DataError(f"{what} not found at {pattern!r}; {where}. {hint}")
    return matches
