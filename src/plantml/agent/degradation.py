"""Graceful degradation when sensors go stale: fallback bundle, rule, or stop.

Per asset and model, :class:`Degrader` watches the stale set (sensors with no
valid value for ``degradation.stale_after``) and walks ``on_stale`` in order:

- ``fallback``: the fallback bundle with the fewest dropped sensors that needs
  none of the stale ones. It is started with the asset's recent rows (replayed
  into its own window), so it predicts at once;
- ``rule``: the configured conditions on the remaining sensors (``rule:
  [{column: bearing_temp, above: 90}]``) decide the alarm; ``value`` is null;
- ``stop``: no predictions; one message on the prediction topic (retained)
  says the asset is stopped and why.

Every message made in these modes has ``degraded: true``, ``mode`` and a
``reason``; ``plantml_agent_degraded_assets{model, mode}`` counts the assets.
When the sensors are valid again, the primary bundle is fed again and takes
over at its first prediction (its window refilled with valid rows only).
Values are never filled beyond ``hold`` (<= the bundle's ``max_gap``).
"""

from __future__ import annotations

import contextlib
import json
import logging
from typing import TYPE_CHECKING, Any

from plantml.agent.assets import AssetState, SlotState, model_time, to_seconds
from plantml.agent.inputs.base import Problem, Record
from plantml.agent.models import ModelSlot, Runner
from plantml.edge import RowError

if TYPE_CHECKING:
    from plantml.agent.engine import Batch, Engine

log = logging.getLogger("plantml.agent")


def degraded_reason(stale: set[str], stale_after: float, serving: str) -> str:
    names = ", ".join(sorted(stale))
    return f"sensor(s) {names} stale (no valid value for more than {stale_after:g}); {serving}"


class Degrader:
    """Mode changes and degraded-mode serving for the engine (same thread)."""

    def __init__(self, engine: Engine):
        self.engine = engine

    def _count(self, slot: ModelSlot, mode: str, by: int) -> None:
        if mode != "primary":
            self.engine.telemetry.degraded.labels(slot.name, mode).inc(by)

    def _set(
        self, slot: ModelSlot, ss: SlotState, asset: str, mode: str, reason: str | None
    ) -> None:
        if mode != ss.mode:
            self._count(slot, ss.mode, -1)
            self._count(slot, mode, 1)
            log.warning(
                "asset %s, model %s: %s -> %s (%s)",
                asset,
                slot.name,
                ss.mode,
                mode,
                reason or "sensors ok",
            )
        ss.mode, ss.reason = mode, reason

    def runner(self, slot: ModelSlot, ss: SlotState) -> Runner | None:
        for runner in slot.fallbacks:
            if tuple(sorted(runner.without)) == ss.without:
                return runner
        return None

    def replay(self, slot: ModelSlot, runner: Runner, state: AssetState, asset: str) -> None:
        """Start ``runner``'s window for ``asset`` from the recent rows (outputs discarded)."""
        runner.stream.reset(asset)
        for _, text in state.recent:
            with contextlib.suppress(RowError):
                runner.stream.feed(self.engine.row_for(runner, slot, asset, json.loads(text)))

    def update_mode(
        self,
        slot: ModelSlot,
        state: AssetState,
        ss: SlotState,
        asset: str,
        stale: set[str],
        t: float | None,
        record: Record,
        batch: Batch,
    ) -> None:
        """Pick the mode for this row from the stale set."""
        if not stale:
            if ss.mode != "primary" and not ss.recovering:
                ss.recovering = True
                slot.primary.stream.reset(asset)  # refill with valid rows only
                log.info(
                    "asset %s, model %s: sensors valid again; primary refilling its window",
                    asset,
                    slot.name,
                )
            return
        ss.recovering = False
        deg = slot.degradation
        if self._still_fits(slot, ss, stale):
            return
        for option in (*deg.on_stale, "stop"):
            if option == "fallback" and (runner := slot.fallback_for(stale)) is not None:
                ss.without = tuple(sorted(runner.without))
                reason = f"fallback bundle {runner.bundle.name} (without {', '.join(ss.without)})"
                self._set(
                    slot, ss, asset, "fallback", degraded_reason(stale, deg.stale_after, reason)
                )
                self.replay(slot, runner, state, asset)
                return
            if option == "rule" and not ({c.column for c in deg.rule} & stale):
                rules = " or ".join(
                    f"{c.column} {'>' if c.above is not None else '<'} "
                    f"{c.above if c.above is not None else c.below:g}"
                    for c in deg.rule
                )
                self._set(
                    slot,
                    ss,
                    asset,
                    "rule",
                    degraded_reason(stale, deg.stale_after, f"rule: alarm if {rules}"),
                )
                return
            if option == "stop":
                ss.without = tuple(sorted(stale))
                reason = degraded_reason(stale, deg.stale_after, "predictions stopped")
                self._set(slot, ss, asset, "stopped", reason)
                self._stopped_message(slot, ss, asset, record, batch)
                return

    def _still_fits(self, slot: ModelSlot, ss: SlotState, stale: set[str]) -> bool:
        """The current degraded mode still serves this stale set."""
        if ss.mode == "fallback":
            runner = self.runner(slot, ss)
            return runner is not None and stale <= runner.without
        if ss.mode == "rule":
            return not ({c.column for c in slot.degradation.rule} & stale)
        return ss.mode == "stopped" and ss.without == tuple(sorted(stale))

    def _stopped_message(
        self, slot: ModelSlot, ss: SlotState, asset: str, record: Record, batch: Batch
    ) -> None:
        runner = slot.primary
        bundle = runner.bundle
        given = model_time(record.time, bundle.input["time_kind"])
        batch.messages.append(
            self.engine.messages.prediction(
                slot.name,
                runner.info,
                asset,
                given,
                bundle.output_name,
                None,
                None,
                None if ss.tracker is None else ss.tracker.phase,
                None,
                "stopped",
                ss.reason,
                record.received,
                None,
            )
        )

    def recovered(self, slot: ModelSlot, ss: SlotState, asset: str) -> None:
        ss.recovering = False
        ss.without = ()
        self._set(slot, ss, asset, "primary", None)

    def serve(
        self,
        slot: ModelSlot,
        state: AssetState,
        ss: SlotState,
        asset: str,
        record: Record,
        row: dict,
        invalid: dict[str, Problem],
        batch: Batch,
    ) -> None:
        """One row in a degraded mode."""
        engine = self.engine
        if ss.mode == "fallback":
            runner = self.runner(slot, ss)
            if runner is None:
                return
            bad = [c for c in runner.sensors if c in invalid]
            if bad:
                engine.reject(batch, record, slot.name, invalid[bad[0]])
                return
            prediction = engine.feed(slot, runner, ss, asset, row, record, batch)
            if prediction is not None:
                engine.publish(slot, runner, ss, asset, record, row, prediction, batch)
        elif ss.mode == "rule":
            values = engine.row_for(slot.primary, slot, asset, row)
            verdict = self._rule(slot, values)
            if verdict is None:
                return
            ss.last_time = to_seconds(record.time)
            engine.publish(slot, slot.primary, ss, asset, record, row, None, batch, None, verdict)

    @staticmethod
    def _rule(slot: ModelSlot, values: dict[str, Any]) -> bool | None:
        """True when any rule condition holds; None when a rule column has no usable value."""
        hit = False
        for cond in slot.degradation.rule:
            try:
                number = float(values[cond.column])
            except (KeyError, TypeError, ValueError):
                return None
            hit = hit or cond.holds(number)
        return hit

    def restore(
        self, slot: ModelSlot, state: AssetState, ss: SlotState, asset: str, saved: dict | None
    ) -> None:
        """Bring back a slot's saved state and refill its windows from the recent rows."""
        if saved is not None:
            if ss.tracker is not None and saved.get("tracker"):
                ss.tracker.load_state_dict(saved["tracker"])
            ss.last_time = saved.get("last_time")
            ss.recovering = bool(saved.get("recovering"))
            ss.without = tuple(saved.get("without") or ())
            mode = saved.get("mode", "primary")
            if mode == "fallback" and self.runner(slot, ss) is None:
                mode, ss.without = "primary", ()  # that fallback is no longer configured
            self._set(slot, ss, asset, mode, saved.get("reason"))
        if ss.mode == "primary" or ss.recovering:
            self.replay(slot, slot.primary, state, asset)
        if ss.mode == "fallback":
            self.replay(slot, self.runner(slot, ss), state, asset)
