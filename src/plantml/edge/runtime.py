"""Run a bundle's ONNX model on windows of sensor rows (batch mode).

:class:`EdgeModel` loads a verified bundle into an onnxruntime session.
``predict_rows`` takes a whole table (columnar), validates every row, builds
each asset's windows from a strided view of its accepted rows (never
materializing all windows) and runs the model in batches.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from plantml.core.asset_threshold import asset_thresholds
from plantml.core.intervals import interval_bounds
from plantml.core.windows import gap_restarts, gather_windows, window_ends
from plantml.edge.bundle import REEXPORT, Bundle, BundleError, load_bundle
from plantml.edge.preprocess import (
    ParsedRows,
    Preprocessor,
    RowError,
    as_given,
    describe_time_order,
)


@dataclass
class RowWindows:
    """The windows found in a table of rows, gathered on demand.

    Attributes:
        features: accepted rows, normalized, (rows, channels) float32, grouped by
            asset (in order of first appearance), in time order within an asset.
        ends: index into ``features`` of each window's last row, (windows,) int64.
        rows: input row index (0-based) of each window's last row, (windows,) int64.
        asset: asset id per window, (windows,) object array of str.
        time: the time value per window as given in the input, (windows,) object array.
        condition: operating-condition code per window (-1 unseen), (windows,) int64.
        errors: one :class:`RowError` per rejected row, in row order.
        restarts: window restarts after a step longer than ``max_gap`` (not counting
            each asset's first row).
        rows_lost: accepted rows that ended no window because their asset's window
            had restarted and was not full again yet (predictions lost to restarts
            when ``stride`` is 1).
        clipped, unseen: see :class:`~plantml.edge.preprocess.ParsedRows`.
    """

    features: np.ndarray
    ends: np.ndarray
    rows: np.ndarray
    asset: np.ndarray
    time: np.ndarray
    condition: np.ndarray
    length: int
    errors: list[RowError]
    restarts: int = 0
    rows_lost: int = 0
    clipped: dict[str, int] = field(default_factory=dict)
    unseen: dict[str, int] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.ends)

    def gather(self, idx: np.ndarray | slice) -> np.ndarray:
        """Windows ``idx`` as (batch, time, channels) float32 (a copy of just those rows)."""
        return gather_windows(self.features, self.ends[idx], self.length)

    def windows(self) -> np.ndarray:
        """All windows, (windows, time, channels) float32."""
        return self.gather(slice(None))


def plan_windows(parsed: ParsedRows, times_raw: Sequence, bundle: Bundle) -> RowWindows:
    """Accept rows in time order per asset, restart at gaps, and find the window ends.

    The runs and the stride convention are :mod:`plantml.core.windows`, as in training.
    """
    length, stride, max_gap = bundle.window_length, bundle.stride, bundle.max_gap
    kind = bundle.input["time_kind"]
    codes: dict[str, int] = {}
    cand = np.flatnonzero(parsed.ok)
    asset_code = np.array([codes.setdefault(parsed.asset[i], len(codes)) for i in cand], np.int64)
    order = cand[np.argsort(asset_code, kind="stable")]
    bounds = np.flatnonzero(np.diff(np.sort(asset_code, kind="stable"))) + 1
    errors = dict(parsed.errors)
    accepted, ends = [], []
    n_acc = restarts = rows_lost = 0
    for group in np.split(order, bounds) if len(order) else []:
        t = parsed.time[group]
        before = np.r_[-np.inf, np.maximum.accumulate(t)[:-1]]
        keep = t > before
        for i in np.flatnonzero(~keep):
            row = int(group[i])
            message = describe_time_order(t[i], before[i], kind)
            errors[row] = RowError(row + 1, parsed.asset[row], bundle.time_column, message)
        rows, ta = group[keep], t[keep]
        pos = np.arange(len(ta))
        restart = gap_restarts(ta, max_gap)
        run_start = np.maximum.accumulate(np.where(restart, pos, 0))
        ends.append(n_acc + window_ends(run_start, length, stride))
        restarts += int(restart[1:].sum())
        rows_lost += int(((run_start > 0) & (pos - run_start < length - 1)).sum())
        accepted.append(rows)
        n_acc += len(rows)
    acc = np.concatenate(accepted) if accepted else np.empty(0, np.int64)
    end = np.concatenate(ends) if ends else np.empty(0, np.int64)
    rows = acc[end]
    assets = np.empty(len(rows), dtype=object)
    assets[:] = [parsed.asset[i] for i in rows]
    times = np.empty(len(rows), dtype=object)
    times[:] = as_given(times_raw, rows)
    return RowWindows(
        features=np.ascontiguousarray(parsed.x[acc]),
        ends=end.astype(np.int64),
        rows=rows.astype(np.int64),
        asset=assets,
        time=times,
        condition=parsed.code[rows],
        length=length,
        errors=[errors[i] for i in sorted(errors)],
        restarts=restarts,
        rows_lost=rows_lost,
        clipped=parsed.clipped,
        unseen=parsed.unseen,
    )


@dataclass
class TableResult:
    """What :meth:`EdgeModel.predict_table` returns: predictions and what happened to the rows.

    ``columns``/``errors``: as :meth:`EdgeModel.predict_rows`; ``rows``: rows read;
    ``restarts``, ``rows_lost``, ``clipped``, ``unseen``: as in :class:`RowWindows`.
    """

    columns: dict[str, Any]
    errors: list[RowError]
    rows: int
    restarts: int
    rows_lost: int
    clipped: dict[str, int]
    unseen: dict[str, int]


class EdgeModel:
    """A bundle ready to predict: ONNX session, preprocessing, alarm rule.

    Args:
        bundle: a :class:`Bundle` or the bundle folder (verified on load).
        threads: onnxruntime intra-op threads (edge devices: 1 or 2).
    """

    def __init__(self, bundle: Bundle | str | Path, threads: int = 1):
        self.bundle = bundle if isinstance(bundle, Bundle) else load_bundle(bundle)
        options = ort.SessionOptions()
        options.intra_op_num_threads = int(threads)
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(
                str(self.bundle.model_path), options, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # onnxruntime raises its own exception types
            raise BundleError(
                f"bundle {self.bundle.path}: onnxruntime cannot load "
                f"{self.bundle.model_path.name} ({exc}); {REEXPORT}"
            ) from None
        self.input_name, self.output_name = self._check_model()
        self.preprocessor = Preprocessor(self.bundle)
        self.conditions = self.preprocessor.conditions
        # dynamic INT8 scales span a call: one window per call keeps predictions batch-free
        self.window_calls = self.bundle.window_calls

    def _check_model(self) -> tuple[str, str]:
        model = self.bundle.manifest["model"]
        inputs = {i.name: i for i in self.session.get_inputs()}
        outputs = [o.name for o in self.session.get_outputs()]
        where = f"bundle {self.bundle.path}: model.onnx"
        if model["input"] not in inputs:
            raise BundleError(
                f"{where} has inputs {list(inputs)}, not {model['input']!r}; {REEXPORT}"
            )
        if model["output"] not in outputs:
            raise BundleError(f"{where} has outputs {outputs}, not {model['output']!r}; {REEXPORT}")
        shape = list(inputs[model["input"]].shape)
        want = [self.bundle.window_length, len(self.bundle.feature_columns)]
        if len(shape) != 3 or any(
            isinstance(s, int) and s != w for s, w in zip(shape[1:], want, strict=True)
        ):
            raise BundleError(
                f"{where} takes input shape {shape}, but the manifest describes windows of "
                f"(batch, {want[0]}, {want[1]}); {REEXPORT}"
            )
        self.fixed_batch = shape[0] if isinstance(shape[0], int) and shape[0] > 0 else None
        return model["input"], model["output"]

    def predict_windows(self, x: np.ndarray, batch_size: int = 1024) -> np.ndarray:
        """Predictions (n,) float32 for normalized windows ``x`` (n, time, channels).

        ``batch_size`` windows per ONNX call; one per call when the bundle needs it
        (:attr:`Bundle.window_calls`), so a window's prediction never depends on the
        other windows of ``x``.
        """
        x = np.ascontiguousarray(x, dtype=np.float32)
        want = (self.bundle.window_length, len(self.bundle.feature_columns))
        if x.ndim != 3 or x.shape[1:] != want:
            raise ValueError(f"windows must have shape (n, {want[0]}, {want[1]}), got {x.shape}")
        step = 1 if self.window_calls else self.fixed_batch or max(int(batch_size), 1)
        k = self.n_classes
        out = np.empty((len(x), k) if k else len(x), dtype=np.float32)
        for start in range(0, len(x), step):
            chunk = x[start : start + step]
            n = len(chunk)
            if self.fixed_batch and n < step:  # a model exported with a fixed batch size
                chunk = np.concatenate([chunk, np.repeat(chunk[-1:], step - n, axis=0)])
            y = np.asarray(self.session.run([self.output_name], {self.input_name: chunk})[0])
            if k:  # class probabilities (batch, K)
                if y.shape != (len(chunk), k):
                    raise BundleError(
                        f"bundle {self.bundle.path}: the model returned shape {y.shape} for "
                        f"{len(chunk)} windows; the manifest lists {k} classes, so expected "
                        f"(batch, {k}); {REEXPORT}"
                    )
                out[start : start + n] = y[:n]
                continue
            if y.size != len(chunk):
                raise BundleError(
                    f"bundle {self.bundle.path}: the model returned shape {y.shape} for "
                    f"{len(chunk)} windows; expected (batch,) or (batch, 1); {REEXPORT}"
                )
            out[start : start + n] = y.reshape(-1)[:n]
        return out

    @property
    def n_classes(self) -> int:
        """K for a class bundle (its model returns ``(batch, K)`` probabilities), else 0."""
        if self.bundle.task.get("kind") != "class":
            return 0
        return len(self.bundle.task.get("classes") or [])

    def interval(
        self, values: np.ndarray, codes: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray] | None:
        """(low, high) float32 per prediction from ``task.interval``, or None without one.

        ``codes`` are the windows' operating-condition codes (-1 unseen: global half-width).
        """
        spec = self.bundle.interval
        if spec is None:
            return None
        return interval_bounds(
            values, codes, spec["half_width"], spec["by"] == "condition", spec.get("floor")
        )

    def alarm(self, values: np.ndarray, low: np.ndarray | None = None) -> np.ndarray | None:
        """0/1 alarm per prediction (int8), or None when the bundle sets no alarm rule.

        The rule is ``task.threshold``; a RUL bundle without one but with
        ``task.interval.alarm_lead_time`` alarms when the lower bound ``low`` is at most it.
        """
        thr = self.bundle.threshold
        lead = (self.bundle.interval or {}).get("alarm_lead_time")
        if thr is None and lead is not None and low is not None:
            return (low <= float(lead)).astype(np.int8)
        if thr is None:
            return None
        hit = values <= thr if self.bundle.alarm_when == "below" else values >= thr
        return hit.astype(np.int8)

    def windows_for_rows(
        self, rows: Mapping[str, Sequence], asset: str | None = None
    ) -> RowWindows:
        """Validate ``rows`` (columnar) and find their windows (gathered on demand).

        ``asset``: the name of the one asset when the bundle has no asset column.
        """
        parsed = self.preprocessor.parse(rows, asset=asset)
        return plan_windows(parsed, rows[self.bundle.time_column], self.bundle)

    def predict_rows(
        self, rows: Mapping[str, Sequence], batch_size: int = 1024, asset: str | None = None
    ) -> tuple[dict[str, Any], list[RowError]]:
        """Predict every window of a table of rows.

        Args:
            rows: columnar input ``{column: sequence}``, one entry per row.
            batch_size: windows per ONNX call.
            asset: the name of the one asset of all rows when the bundle was trained
                without asset ids (``input.asset_column`` null); ignored otherwise.

        Returns:
            Output columns ``asset``, ``time`` (as given), ``condition`` (name or
            ``unseen``), ``<task.output_name>`` (float32), ``<output_name>_low`` /
            ``_high`` (with ``task.interval``: ``rul_low``, ``rul_high``) and ``alarm``
            (0/1, only with a threshold or an interval lead time); one row per window, by asset in order of first
            appearance, then time. And one :class:`RowError` per rejected row.
            :meth:`predict_table` also says what else happened to the rows.
        """
        result = self.predict_table(rows, batch_size, asset)
        return result.columns, result.errors

    def predict_table(
        self, rows: Mapping[str, Sequence], batch_size: int = 1024, asset: str | None = None
    ) -> TableResult:
        """:meth:`predict_rows` with the report: restarts, rows lost, clamped, unseen conditions."""
        columns, win = self._predict(rows, batch_size, asset)
        return TableResult(
            columns=columns,
            errors=win.errors,
            rows=max((len(v) for v in rows.values()), default=0),
            restarts=win.restarts,
            rows_lost=win.rows_lost,
            clipped=win.clipped,
            unseen=win.unseen,
        )

    def _predict(self, rows: Mapping[str, Sequence], batch_size: int, asset: str | None):
        win = self.windows_for_rows(rows, asset)
        k = self.n_classes
        values = np.empty((len(win), k) if k else len(win), dtype=np.float32)
        step = max(int(batch_size), 1)
        for start in range(0, len(win), step):
            idx = np.arange(start, min(start + step, len(win)))
            values[idx] = self.predict_windows(win.gather(idx), batch_size=step)
        names = self.conditions.name_list(win.condition)
        out: dict[str, Any] = {
            "asset": win.asset.tolist(),
            "time": win.time.tolist(),
            "condition": names,
        }
        if k:  # the predicted class name and its probability
            classes = [str(c) for c in self.bundle.task["classes"]]
            best = values.argmax(axis=1) if len(values) else np.zeros(0, dtype=np.int64)
            out[self.bundle.output_name] = [classes[i] for i in best]
            out["probability"] = values.max(axis=1) if len(values) else values[:, 0]
            return out, win
        out[self.bundle.output_name] = values
        bounds = self.interval(values, win.condition)
        if bounds is not None:
            out[f"{self.bundle.output_name}_low"], out[f"{self.bundle.output_name}_high"] = bounds
        alarm = self.alarm(values, None if bounds is None else bounds[0])
        spec = self.bundle.task.get("asset_threshold")
        if spec is not None:  # each asset's own threshold, learned on its first windows
            thresholds = asset_thresholds(win.asset, values, spec)
            out["threshold"] = thresholds
            alarm = np.where(np.isnan(thresholds), 0, values >= thresholds).astype(np.int8)
        if alarm is not None:
            out["alarm"] = alarm
        return out, win
