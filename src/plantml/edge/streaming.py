"""Streaming: rows arrive one at a time, a prediction leaves when a window is due.

Each asset keeps a ring buffer of its last ``window_length`` normalized rows
(a preallocated (time, channels) float32 array), the time of its last accepted
row and how many complete windows it has seen since its last restart. Rows
are parsed by the same code as batch mode, so both give the same predictions.

What happened to each asset's rows is counted in :attr:`StreamingPredictor.report`
(``AssetReport``: rows, rejected, predictions, window restarts, rows left without a
prediction by a restart, values clamped into the valid range, operating-condition
values not seen in training).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from plantml.core.asset_threshold import check_spec, learned_threshold
from plantml.core.windows import window_due
from plantml.edge.bundle import Bundle
from plantml.edge.preprocess import RowError, describe_time_order, given_time
from plantml.edge.runtime import EdgeModel


@dataclass
class Prediction:
    """One prediction: the asset, the time of the window's last row (as given), the
    operating condition's name (``unseen`` if unknown), the model's value, the
    alarm (None when the bundle sets no alarm rule) and, for a bundle with
    ``task.interval``, the interval's bounds (else None)."""

    asset: str
    time: Any
    condition: str
    value: float
    alarm: bool | None
    low: float | None = None
    high: float | None = None
    threshold: float | None = None  # the asset's learned threshold (task.asset_threshold)


@dataclass
class AssetReport:
    """Counts for one asset's rows since it was first seen (or reset).

    ``rows_lost``: accepted rows that ended no window because the asset's window
    had restarted (a gap longer than ``max_gap``) and was not full again yet.
    ``clipped``: per feature, values clamped into the valid range (``action: clip``).
    ``unseen``: per operating-condition value not seen in training, rows with it
    (normalized with the global statistics, predictions labelled ``unseen``).
    """

    rows: int = 0
    rejected: int = 0
    predictions: int = 0
    restarts: int = 0
    rows_lost: int = 0
    clipped: dict[str, int] = field(default_factory=dict)
    unseen: dict[str, int] = field(default_factory=dict)


class _AssetState:
    __slots__ = ("buffer", "calibration", "count", "last_time", "pos", "restarts", "threshold")

    def __init__(self, length: int, channels: int):
        self.calibration: list[float] = []  # first scores (task.asset_threshold)
        self.threshold: float | None = None
        self.buffer = np.zeros((length, channels), dtype=np.float32)
        self.pos = 0  # where the next row goes (the oldest row once full)
        self.count = 0  # rows since the last restart
        self.restarts = 0
        self.last_time: float | None = None

    def restart(self) -> None:
        self.pos = self.count = 0
        self.restarts += 1


class StreamingPredictor:
    """Feed rows one at a time; get a :class:`Prediction` whenever a window is due.

    Args:
        model: an :class:`EdgeModel`, a :class:`Bundle` or a bundle folder.
        asset: the name of the one asset when the bundle was trained without asset ids.
    """

    def __init__(
        self, model: EdgeModel | Bundle | str | Path, threads: int = 1, asset: str | None = None
    ):
        self.model = model if isinstance(model, EdgeModel) else EdgeModel(model, threads)
        self.asset = asset  # the one asset's name when the bundle has no asset column
        bundle = self.model.bundle
        self.length, self.stride, self.max_gap = (
            bundle.window_length,
            bundle.stride,
            bundle.max_gap,
        )
        self.channels = len(bundle.feature_columns)
        self.required = bundle.required_columns
        self.time_kind = bundle.input["time_kind"]
        self.rows_seen = 0
        self._assets: dict[str, _AssetState] = {}
        spec = bundle.task.get("asset_threshold")
        self.asset_threshold = None if spec is None else check_spec(spec)
        self.report: dict[str, AssetReport] = {}  # per asset ("": rows without an asset id)

    @property
    def learned_thresholds(self) -> dict[str, float]:
        """The thresholds assets have learned so far (``task.asset_threshold``)."""
        return {a: s.threshold for a, s in self._assets.items() if s.threshold is not None}

    def _asset_alarm(self, state: _AssetState, value: float) -> tuple[bool, float | None]:
        """Calibrate on the asset's first windows, then alarm against what it learned."""
        k, q, m = self.asset_threshold
        if state.threshold is None:
            state.calibration.append(value)
            if len(state.calibration) == k:
                state.threshold = learned_threshold(np.array(state.calibration), q, m)
                state.calibration = []
            return False, None
        return value >= state.threshold, state.threshold

    def reset(self, asset: str | None = None) -> None:
        """Forget one asset's history and counts (its next window starts empty), or every asset's."""
        if asset is None:
            self._assets.clear()
            self.report.clear()
            self.rows_seen = 0
        else:
            self._assets.pop(str(asset), None)
            self.report.pop(str(asset), None)

    def _count(self, asset: str | None) -> AssetReport:
        key = "" if asset is None else asset
        if key not in self.report:
            self.report[key] = AssetReport()
        return self.report[key]

    def feed(self, row: Mapping[str, object], row_number: int | None = None) -> Prediction | None:
        """Add one row; return the prediction when this row completes a due window.

        Raises :class:`RowError` for a bad row (missing column or value, not a
        number, outside the valid range, time not after the asset's previous row);
        nothing changes then but the asset's counts in :attr:`report`.
        """
        try:
            prediction = self._feed(row, row_number)
        except RowError as err:
            self._count(err.asset).rows += 1
            self._count(err.asset).rejected += 1
            raise
        return prediction

    def _feed(self, row: Mapping[str, object], row_number: int | None) -> Prediction | None:
        self.rows_seen += 1
        number = self.rows_seen if row_number is None else row_number
        bundle = self.model.bundle
        missing = [c for c in self.required if c not in row]
        if missing:
            asset = row.get(bundle.asset_column) if bundle.asset_column else self.asset
            raise RowError(
                number,
                None if asset is None else str(asset),
                missing[0],
                f"the row lacks the column(s) {missing}; every row needs: "
                f"{', '.join(self.required)}",
            )
        parsed = self.model.preprocessor.parse(
            {c: [row[c]] for c in self.required}, number, asset=self.asset
        )
        if parsed.errors:
            raise parsed.errors[0]
        asset, t = parsed.asset[0], float(parsed.time[0])
        state = self._assets.get(asset)
        if state is not None and state.last_time is not None and t <= state.last_time:
            message = describe_time_order(t, state.last_time, self.time_kind)
            raise RowError(number, asset, bundle.time_column, message)
        if state is None:
            state = self._assets[asset] = _AssetState(self.length, self.channels)
        elif self.max_gap is not None and t - state.last_time > self.max_gap:
            state.restart()
        state.last_time = t
        state.buffer[state.pos] = parsed.x[0]
        state.pos = (state.pos + 1) % self.length
        state.count += 1
        counts = self._count(asset)
        counts.rows += 1
        for total, hits in ((counts.clipped, parsed.clipped), (counts.unseen, parsed.unseen)):
            for key, n in hits.items():
                total[key] = total.get(key, 0) + n
        counts.restarts = state.restarts
        if state.restarts and state.count < self.length:
            counts.rows_lost += 1
        if not window_due(state.count, self.length, self.stride):
            return None
        counts.predictions += 1
        window = np.concatenate([state.buffer[state.pos :], state.buffer[: state.pos]])
        value = self.model.predict_windows(window[None])
        bounds = self.model.interval(value, parsed.code[:1])
        alarm = self.model.alarm(value, None if bounds is None else bounds[0])
        learned = None
        if self.asset_threshold is not None:
            hit, learned = self._asset_alarm(state, float(value[0]))
            alarm = np.array([hit])
        return Prediction(
            asset=asset,
            time=given_time(row[bundle.time_column]),
            condition=self.model.conditions.name(int(parsed.code[0])),
            value=float(value[0]),
            alarm=None if alarm is None else bool(alarm[0]),
            low=None if bounds is None else float(bounds[0][0]),
            high=None if bounds is None else float(bounds[1][0]),
            threshold=learned,
        )

    def feed_many(
        self, rows: Iterable[Mapping[str, object]]
    ) -> tuple[list[Prediction], list[RowError]]:
        """Feed rows in order; bad rows are collected, never raised."""
        predictions, errors = [], []
        for row in rows:
            try:
                out = self.feed(row)
            except RowError as exc:
                errors.append(exc)
                continue
            if out is not None:
                predictions.append(out)
        return predictions, errors
