"""Replay rows from a CSV or JSON-lines file (or stdin): for tests, backfills and demos.

CSV files are read lazily by :func:`plantml.edge.io.iter_csv`, the reader of
``plantml-edge stream``; the asset and time columns are the input's
``asset_column``/``time_column`` (default: the first model's). A JSON-lines
file holds one telemetry row per line (``{"asset", "ts", "values"}``, see
:mod:`plantml.agent.inputs.base`). ``rate`` paces the replay (rows per second;
0: as fast as the agent takes them). The position (rows consumed) is committed
with each batch, so a restarted agent continues after the last committed row.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from plantml.agent.config import FileInputConfig
from plantml.agent.inputs.base import Record, parse_payload, row_record
from plantml.edge.io import iter_csv

log = logging.getLogger("plantml.agent")


class FileInput:
    """A finite input: rows of one file, in order."""

    finite = True

    def __init__(
        self, cfg: FileInputConfig, asset_column: str, time_column: str, start_at: int = 0
    ):
        self.cfg = cfg
        self.name = cfg.name
        self.asset_column = cfg.asset_column or asset_column
        self.time_column = cfg.time_column or time_column
        self.start_at = 0 if cfg.path == "-" else start_at
        self.rows_read = 0
        self.done = threading.Event()
        self.error: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _format(self) -> str:
        if self.cfg.format != "auto":
            return self.cfg.format
        suffix = Path(self.cfg.path).suffix.lower()
        return "jsonl" if suffix in (".jsonl", ".ndjson", ".json") else "csv"

    def _rows(self) -> Iterator[tuple[Any, ...]]:
        source = f"file:{self.cfg.path}"
        if self._format() == "csv":
            if self.cfg.path == "-":
                raise ValueError("reading CSV from stdin is not supported; use format: jsonl")
            for row in iter_csv(self.cfg.path):
                asset = row.pop(self.asset_column, None)
                ts = row.pop(self.time_column, None)
                yield (asset, ts, row, source)
            return
        stream = (
            contextlib.nullcontext(sys.stdin)
            if self.cfg.path == "-"
            else open(self.cfg.path, encoding="utf-8")  # noqa: SIM115
        )
        with stream as lines:
            for number, line in enumerate(lines, start=1):
                if line.strip():
                    yield (None, None, line.encode("utf-8"), f"{source}:{number}")

    def _run(self, sink: Callable[[Record], None]) -> None:
        period = 1.0 / self.cfg.rate if self.cfg.rate > 0 else 0.0
        next_at = time.monotonic()
        try:
            for index, (asset, ts, values, source) in enumerate(self._rows(), start=1):
                if index <= self.start_at:
                    continue
                if self._stop.is_set():
                    return
                if period:
                    next_at += period
                    delay = next_at - time.monotonic()
                    if delay > 0 and self._stop.wait(delay):
                        return
                received = time.time()
                if isinstance(values, bytes):
                    records = parse_payload(values, source, received)
                else:
                    row = {"asset": asset or None, "ts": ts or None, "values": values}
                    records = [row_record(row, None, source, received)]
                for record in records:
                    record.position = (self.name, index)
                    sink(record)
                self.rows_read = index
        except (OSError, ValueError) as exc:
            self.error = f"input {self.name}: {exc}"
            log.error("%s", self.error)
        finally:
            self.done.set()

    def start(self, sink: Callable[[Record], None]) -> None:
        self._thread = threading.Thread(
            target=self._run, args=(sink,), name=f"input-{self.name}", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def status(self) -> dict[str, Any]:
        return {
            "type": "file",
            "rows": self.rows_read,
            "done": self.done.is_set(),
            "error": self.error,
        }
