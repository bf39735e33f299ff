"""The processing core: records in, predictions, alarm events and rejections out, durably.

:meth:`Engine.process` takes a batch of :class:`~plantml.agent.inputs.base.Record` s
(in arrival order) and, per record: routes it to the models serving its asset,
cleans its values (limits), advances the sensor clocks, picks each model's
mode (primary, fallback, rule, stopped; :mod:`plantml.agent.degradation`),
feeds the row through ``plantml.edge``'s :class:`StreamingPredictor` (the same
parsing, windows and per-row errors as ``plantml-edge``), updates the alarm
state machine, and writes the messages. Everything a batch produces (outbox
messages, prediction-log rows, rejections, recent rows, asset states, input
positions) is committed in one SQLite transaction; only then are the records
acknowledged (MQTT PUBACK). The network is never waited for here.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from plantml.agent.alarms import AlarmTracker
from plantml.agent.assets import (
    AssetState,
    SlotState,
    Validator,
    is_timestamp,
    model_time,
    to_seconds,
)
from plantml.agent.config import AgentConfig
from plantml.agent.degradation import Degrader
from plantml.agent.inputs.base import Problem, Record
from plantml.agent.messages import Messages
from plantml.agent.metrics import Telemetry
from plantml.agent.models import ModelSlot, Runner
from plantml.agent.store import OutMessage, Store
from plantml.agent.summary import SketchProvider
from plantml.edge import Prediction, RowError

log = logging.getLogger("plantml.agent")
LOGGED_REJECTIONS = 20  # per summary interval; the rest are counted and stored
REDELIVERED = (
    "the broker delivered this row again after a lost acknowledgement; the agent already "
    "processed it (nothing to fix)"
)


@dataclass
class Batch:
    """What one batch produces, written in one transaction."""

    messages: list[OutMessage] = field(default_factory=list)
    log_rows: list[tuple] = field(default_factory=list)
    rejected: list[tuple] = field(default_factory=list)
    recent: list[tuple[str, int, str]] = field(default_factory=list)
    touched: set[str] = field(default_factory=set)
    positions: dict[str, int] = field(default_factory=dict)


class Engine:
    """Runs the models over records; owns the asset states (one thread only)."""

    def __init__(
        self,
        cfg: AgentConfig,
        slots: list[ModelSlot],
        store: Store,
        telemetry: Telemetry,
        messages: Messages,
        sketches: dict[str, SketchProvider],
    ):
        self.cfg, self.slots, self.store, self.telemetry = cfg, slots, store, telemetry
        self.messages, self.sketches = messages, sketches
        categorical = {
            s.primary.bundle.conditions.get("column")
            for s in slots
            if s.primary.bundle.conditions["mode"] == "column"
        }
        self.validator = Validator(cfg.max_abs, cfg.bounds, {c for c in categorical if c})
        self.history = max(s.history for s in slots)
        self.sensors = sorted({c for s in slots for c in s.sensors})
        self.assets: dict[str, AssetState] = {}
        self._routes: dict[str, list[ModelSlot]] = {}
        self.degrader = Degrader(self)
        self.models_info = [s.primary.info for s in slots]
        self.logged_rejections = 0
        self.rejected_messages = 0
        self.rejected_seq = store.meta("rejected_seq")

    # -- routing and state -------------------------------------------------------------------------
    def route(self, asset: str) -> list[ModelSlot]:
        slots = self._routes.get(asset)
        if slots is None:
            slots = self._routes[asset] = [s for s in self.slots if s.serves(asset)]
            for s in slots:
                self.telemetry.assets.labels(s.name).inc()
        return slots

    def asset_state(self, asset: str) -> AssetState:
        state = self.assets.get(asset)
        if state is None:
            state = self.assets[asset] = AssetState(self.history)
        return state

    def slot_state(self, slot: ModelSlot, state: AssetState) -> SlotState:
        ss = state.slots.get(slot.name)
        if ss is None:
            rule = slot.primary.rule
            ss = state.slots[slot.name] = SlotState(tracker=AlarmTracker(rule) if rule else None)
        return ss

    # -- one batch -----------------------------------------------------------------------------------
    def process(self, records: list[Record]) -> None:
        """Process and commit a batch, then acknowledge its records."""
        batch = Batch()
        for record in records:
            try:
                self._record(record, batch)
            except Exception as exc:  # a row must never stop the agent: report it and go on
                log.exception(
                    "internal error on a row from %s (asset %s)", record.source, record.asset
                )
                problem = Problem(
                    "internal_error", f"{type(exc).__name__}: {exc} (please report it)"
                )
                self.reject(batch, record, "", problem)
            if record.position is not None:
                batch.positions[record.position[0]] = record.position[1]
        self.commit(batch)
        for record in records:
            if record.ack is not None:
                record.ack()

    def commit(self, batch: Batch) -> None:
        now = time.time()
        with self.store.transaction():
            self.store.add_messages(batch.messages, now)
            dropped = self.store.bound_outbox(self.cfg.store.outbox_max_bytes)
            if dropped:
                total = self.store.meta("dropped")
                seq = self.store.bump("dropped_notices")
                self.store.add_messages(
                    [self.messages.dropped(seq, self.models_info, dropped, total)], now
                )
            if batch.log_rows:
                self.store.log_predictions(batch.log_rows, now)
            if batch.rejected:
                self.store.log_rejected(batch.rejected, now, self.cfg.store.rejected_keep)
                self.store.set_meta("rejected_seq", self.rejected_seq)
            if batch.recent:
                self.store.add_recent_rows(batch.recent, self.history)
            if batch.touched:
                self.store.save_states({a: self.assets[a].to_dict() for a in batch.touched})
            for name, position in batch.positions.items():
                self.store.set_position(name, position)
        if dropped:
            self.telemetry.outbox_dropped.inc(dropped)
            log.warning(
                "outbox full (store.outbox_max_bytes=%d): dropped the %d oldest messages",
                self.cfg.store.outbox_max_bytes,
                dropped,
            )

    def _record(self, record: Record, batch: Batch) -> None:
        if record.problem is not None:
            self.reject(batch, record, "", record.problem)
            return
        asset = record.asset or ""
        if any(c in asset for c in "/+#") or "\x00" in asset:
            problem = Problem(
                "bad_asset", f"asset id {asset!r} may not contain / + # (MQTT topics)"
            )
            self.reject(batch, record, "", problem)
            return
        slots = self.route(asset)
        if not slots:
            patterns = "; ".join(f"{s.name}: {', '.join(s.cfg.assets)}" for s in self.slots)
            problem = Problem(
                "unknown_asset",
                f"no model serves asset {asset!r} (patterns: {patterns}); add it to a model's assets",
            )
            self.reject(batch, record, "", problem)
            return
        state = self.asset_state(asset)
        t = to_seconds(record.time)
        clean, invalid, missing = {}, {}, []
        for column, value in record.values.items():
            problem = self.validator.problem(column, value)
            if problem is None:
                clean[column] = value
            elif problem[0] == "missing":
                clean[column] = value  # the runtime reports it (unless a held value fills it)
                missing.append(column)
            else:
                invalid[column] = Problem(problem[0], problem[1], column)
        missing += [c for c in self.sensors if c not in record.values]
        held = state.hold_candidates(t, missing + list(invalid))
        state.observe(t, {c: v for c, v in clean.items() if c not in missing})
        row = {"time": record.time, "values": clean, "held": held}
        for slot in slots:
            self._slot(slot, state, asset, record, row, invalid, t, batch)
        state.seq += 1
        text = _json(row)
        state.recent.append((state.seq, text))  # as JSON: a tenth of the memory of the dict
        batch.recent.append((asset, state.seq, text))
        batch.touched.add(asset)

    # -- per model -----------------------------------------------------------------------------------
    def row_for(self, runner: Runner, slot: ModelSlot, asset: str, row: dict) -> dict[str, Any]:
        """The row as ``runner``'s bundle reads it: values, held values, asset and time columns."""
        values = dict(row["values"])
        hold = slot.degradation.hold
        for column, (value, age) in row["held"].items():
            if age <= hold and _missing(values.get(column)):
                values[column] = value
        bundle = runner.bundle
        values[bundle.asset_column] = asset
        values[bundle.time_column] = model_time(row["time"], bundle.input["time_kind"])
        return values

    def _slot(
        self,
        slot: ModelSlot,
        state: AssetState,
        asset: str,
        record: Record,
        row: dict,
        invalid: dict[str, Problem],
        t: float | None,
        batch: Batch,
    ) -> None:
        ss = self.slot_state(slot, state)
        stale = state.stale(slot.sensors, t, slot.degradation.stale_after)
        self.degrader.update_mode(slot, state, ss, asset, stale, t, record, batch)
        if ss.mode == "primary" or ss.recovering:
            runner = slot.primary
            prediction = None
            bad = [c for c in runner.sensors if c in invalid]
            if bad:
                self.reject(batch, record, slot.name, invalid[bad[0]])
            else:
                prediction = self.feed(slot, runner, ss, asset, row, record, batch)
            if ss.mode != "primary" and prediction is not None:
                self.degrader.recovered(slot, ss, asset)  # the primary's window is full again
            if ss.mode == "primary":
                if prediction is not None:
                    self.publish(slot, runner, ss, asset, record, row, prediction, batch)
                return
        self.degrader.serve(slot, state, ss, asset, record, row, invalid, batch)

    def feed(
        self,
        slot: ModelSlot,
        runner: Runner,
        ss: SlotState,
        asset: str,
        row: dict,
        record: Record,
        batch: Batch,
    ) -> tuple[Prediction, float] | None:
        """Feed one row to a bundle; a bad row is rejected (counted, reported) and returns None."""
        model_row = self.row_for(runner, slot, asset, row)
        start = time.perf_counter()
        try:
            prediction = runner.stream.feed(model_row)
        except RowError as err:
            self.reject(
                batch, record, slot.name, self._classify(err, runner, model_row, ss, record)
            )
            return None
        elapsed = time.perf_counter() - start
        ss.last_time = to_seconds(record.time)
        self.telemetry.row_accepted(slot.name, None if prediction is None else prediction.alarm)
        self.sketches[slot.name].update(model_row, prediction)
        if prediction is None:
            return None
        if not math.isfinite(prediction.value):
            problem = Problem(
                "prediction_not_finite", f"the model returned {prediction.value} for this window"
            )
            self.reject(batch, record, slot.name, problem)
            return None
        return prediction, elapsed

    def _classify(
        self, err: RowError, runner: Runner, row: dict, ss: SlotState, record: Record
    ) -> Problem:
        """A reason label for a runtime row error (for metrics), keeping its message."""
        column, bundle = err.column, runner.bundle
        if column == bundle.time_column:
            t = to_seconds(record.time)
            if t is not None and ss.last_time is not None and t <= ss.last_time:
                reason = "duplicate" if t == ss.last_time else "time_order"
                if record.redelivered:  # processed before its acknowledgement was lost
                    return Problem("redelivered", REDELIVERED, column)
            else:
                reason = "bad_time"
        elif column == bundle.asset_column:
            reason = "no_asset"
        elif column not in record.values and column not in row:
            reason = "missing_column"
        elif row.get(column) is None or (
            isinstance(row.get(column), str) and not row[column].strip()
        ):
            reason = "missing_value"
        else:
            reason = "bad_value"
        return Problem(reason, err.message, column)

    def publish(
        self,
        slot: ModelSlot,
        runner: Runner,
        ss: SlotState,
        asset: str,
        record: Record,
        row: dict,
        result: tuple[Prediction, float] | None,
        batch: Batch,
        value: float | None = None,
        hit: bool | None = None,
    ) -> None:
        """Messages for one prediction (model output, or a rule's verdict with ``hit``)."""
        prediction, elapsed = result if result is not None else (None, None)
        mode = ss.mode
        reason = None if mode == "primary" else ss.reason
        if prediction is not None:
            value, hit, given, condition = (
                prediction.value,
                prediction.alarm,
                prediction.time,
                prediction.condition,
            )
        else:
            given, condition = model_time(row["time"], runner.bundle.input["time_kind"]), None
        t = to_seconds(given)
        row_time = t if is_timestamp(given) else None
        self.telemetry.predicted(slot.name, mode, elapsed)
        event = None
        if ss.tracker is not None and t is not None:
            if prediction is not None and runner.rule is not None:
                rule = runner.rule
                event = ss.tracker.update(t, value, given, rule.hit(value), rule.safe(value))
            elif prediction is None:
                event = ss.tracker.update(t, value, given, bool(hit), not hit)
        alarm_state = None if ss.tracker is None else ss.tracker.phase
        output = runner.bundle.output_name if prediction is not None else "rule"
        batch.messages.append(
            self.messages.prediction(
                slot.name,
                runner.info,
                asset,
                given,
                output,
                value,
                hit,
                alarm_state,
                condition,
                mode,
                reason,
                record.received,
                row_time,
            )
        )
        payload = batch.messages[-1].payload.decode()
        batch.log_rows.append(
            (
                slot.name,
                asset,
                str(given),
                value,
                None if hit is None else int(hit),
                int(mode != "primary"),
                payload,
            )
        )
        if event is not None:
            self.telemetry.alarm(slot.name, event.kind)
            self.telemetry.alarms_active.labels(slot.name).inc(1 if event.kind == "raised" else -1)
            batch.messages.append(
                self.messages.alarm(
                    slot.name, runner.info, asset, event, mode, reason, record.received, row_time
                )
            )

    # -- rejections ----------------------------------------------------------------------------------
    def reject(self, batch: Batch, record: Record, model: str, problem: Problem) -> None:
        """Count, store, log (the first few per interval) and publish a rejected row.

        A redelivered row the agent already processed is only counted: it is not bad data.
        """
        self.telemetry.rejected(model, problem.reason)
        if problem.reason == "redelivered":
            return
        entry = {
            "source": record.source,
            "asset": record.asset,
            "model": model or None,
            "column": problem.column,
            "reason": problem.reason,
            "message": problem.message,
            "time": record.time,
        }
        batch.rejected.append(
            (
                record.source,
                record.asset,
                model or None,
                problem.column,
                problem.reason,
                problem.message,
            )
        )
        if self.logged_rejections < LOGGED_REJECTIONS:
            log.warning(
                "rejected row from %s (asset %s%s): %s: %s",
                record.source,
                record.asset,
                f", model {model}" if model else "",
                problem.reason,
                problem.message,
            )
        self.logged_rejections += 1
        if self.rejected_messages < self.cfg.max_rejected_messages:
            self.rejected_seq += 1
            batch.messages.append(
                self.messages.rejected(self.rejected_seq, self.models_info, entry)
            )
        self.rejected_messages += 1

    def new_interval(self) -> dict[str, int]:
        """Reset the per-interval caps; returns what was not logged or published."""
        out = {
            "rejections_not_logged": max(self.logged_rejections - LOGGED_REJECTIONS, 0),
            "rejections_not_published": max(
                self.rejected_messages - self.cfg.max_rejected_messages, 0
            ),
        }
        if out["rejections_not_logged"]:
            log.warning(
                "... and %d more rejected rows (see plantml-agent status)",
                out["rejections_not_logged"],
            )
        self.logged_rejections = self.rejected_messages = 0
        return out

    # -- restart -------------------------------------------------------------------------------------
    def restore(self, on_slot: Callable[[ModelSlot, SlotState, dict], None] | None = None) -> int:
        """Rebuild asset states and windows from the store; returns the number of assets."""
        states, rows = self.store.load_states(), self.store.load_recent_rows()
        for asset, saved in states.items():
            slots = self.route(asset)
            state = self.asset_state(asset)
            state.seq = saved["seq"]
            state.first_time, state.last_time = saved["first_time"], saved["last_time"]
            state.last_valid, state.last_value = saved["last_valid"], saved["last_value"]
            for seq, row in rows.get(asset, []):
                state.recent.append((seq, row))
            for slot in slots:
                ss = self.slot_state(slot, state)
                self.degrader.restore(slot, state, ss, asset, saved["slots"].get(slot.name))
        return len(states)


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), default=str)
