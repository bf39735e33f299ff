"""The running agent: inputs -> queue -> engine (one thread) -> outbox -> publisher.

:class:`Service` loads and verifies the bundles, opens the state file, restores
every asset's windows and alarm states, starts the metrics endpoint, the
publisher and the inputs, then processes records in batches until stopped.
SIGTERM (or SIGINT) stops it gracefully: inputs stop taking rows, the rows
already received are processed, committed and acknowledged, the publisher gets
``processing.shutdown_grace`` to flush the outbox, and the state is closed. A
restart resumes from the state file (windows refilled from recent rows, file
inputs from their position, MQTT from the persistent session).
"""

from __future__ import annotations

import logging
import queue
import signal
import threading
import time
from functools import partial
from typing import Any

from plantml.agent.config import TOPICS, AgentConfig, FileInputConfig, MQTTInputConfig
from plantml.agent.engine import Engine
from plantml.agent.errors import AgentConfigError
from plantml.agent.inputs.base import Record
from plantml.agent.inputs.file import FileInput
from plantml.agent.messages import Messages
from plantml.agent.metrics import MetricsServer, Telemetry
from plantml.agent.models import ModelSlot
from plantml.agent.store import Store
from plantml.agent.summary import load_provider_factory, summary_body

log = logging.getLogger("plantml.agent")
PRUNE_EVERY = 60.0


class Service:
    """One agent process. ``run()`` blocks until :meth:`stop` (or a signal)."""

    def __init__(self, cfg: AgentConfig, exit_when_inputs_end: bool = False):
        self.cfg = cfg
        self.exit_when_inputs_end = exit_when_inputs_end
        self.telemetry = Telemetry()
        self.slots = [ModelSlot(m, i) for i, m in enumerate(cfg.models)]
        names = [s.name for s in self.slots]
        if len(set(names)) != len(names):
            raise AgentConfigError(
                f"models: two entries have the same name ({names}); give each one models[].name"
            )
        for slot in self.slots:
            for role, runner in [("primary", slot.primary)] + [
                ("fallback", r) for r in slot.fallbacks
            ]:
                info = runner.info
                self.telemetry.model_info.labels(
                    slot.name, info["name"], info["version"], info["bundle_sha256"], role
                ).set(1)
        self.store = Store(cfg.store.path, cfg.store.synchronous)
        mqtt = cfg.mqtt
        self.messages = Messages(
            cfg.site,
            cfg.agent_id,
            mqtt.topics if mqtt else dict(TOPICS),
            mqtt.retain if mqtt else True,
        )
        factory = load_provider_factory(cfg.sketches)
        self.sketches = {s.name: factory(s.primary.bundle) for s in self.slots}
        self.engine = Engine(
            cfg, self.slots, self.store, self.telemetry, self.messages, self.sketches
        )
        self.queue: queue.Queue[Record] = queue.Queue(cfg.queue)
        self.publisher = None
        if mqtt is not None:
            from plantml.agent.publisher import Publisher

            # deletes need no fsync: one lost in a power cut is a message sent again
            self.publisher = Publisher(mqtt, Store(cfg.store.path, "normal"), self.telemetry)
        self.inputs = [self._input(i) for i in cfg.inputs]
        self.metrics = None
        if cfg.metrics_port is not None:
            self.metrics = MetricsServer(
                self.telemetry, self.health, cfg.metrics_host, cfg.metrics_port
            )
        self.stopping = threading.Event()
        self.ready = False
        self.heartbeat = time.monotonic()
        self.started = time.time()
        self.last_summary = time.time()
        self.last_prune = 0.0
        self.outbox = self.store.outbox_depth()

    def _input(self, icfg: Any):
        if isinstance(icfg, FileInputConfig):
            first = self.slots[0].primary.bundle
            return FileInput(
                icfg, first.asset_column, first.time_column, start_at=self.store.position(icfg.name)
            )
        if isinstance(icfg, MQTTInputConfig):
            from plantml.agent.inputs.mqtt import MQTTInput

            return MQTTInput(icfg, self.cfg.mqtt, self.cfg.site, self.telemetry)
        from plantml.agent.inputs.opcua import OPCUAInput

        return OPCUAInput(icfg, self.telemetry)

    # -- lifecycle ------------------------------------------------------------------------------------
    def start(self) -> None:
        assets = self.engine.restore()
        if assets:
            log.info("restored the state of %d assets from %s", assets, self.cfg.store.path)
        if self.metrics is not None:
            self.metrics.start()
            host, port = self.metrics.address[:2]
            log.info("metrics on http://%s:%d/metrics, health on /healthz", host, port)
        if self.publisher is not None:
            self.publisher.start()
        for source in self.inputs:
            source.start(partial(self._sink, source.name))
        self.ready = True
        log.info(
            "plantml-agent running: %d model(s) (%s), %d input(s)",
            len(self.slots),
            ", ".join(f"{s.name} {s.primary.info['version']}" for s in self.slots),
            len(self.inputs),
        )

    def _sink(self, input_name: str, record: Record) -> None:
        self.telemetry.received(input_name)
        self.queue.put(record)

    def stop(self, *_: Any) -> None:
        self.stopping.set()

    def install_signal_handlers(self) -> None:
        signal.signal(signal.SIGTERM, self.stop)
        signal.signal(signal.SIGINT, self.stop)

    def _take(self, timeout: float) -> list[Record]:
        try:
            batch = [self.queue.get(timeout=timeout)]
        except queue.Empty:
            return []
        while len(batch) < self.cfg.batch:
            try:
                batch.append(self.queue.get_nowait())
            except queue.Empty:
                break
        return batch

    def _inputs_done(self) -> bool:
        return all(getattr(i, "finite", False) and i.done.is_set() for i in self.inputs)

    def run(self) -> None:
        """Process records until stopped; then shut down gracefully."""
        self.start()
        try:
            while not self.stopping.is_set():
                self.step(0.2)
                if self.exit_when_inputs_end and self._inputs_done() and self.queue.empty():
                    break
        finally:
            self.shutdown()

    def step(self, timeout: float) -> int:
        """One batch (waiting up to ``timeout`` for the first record) and the periodic work."""
        batch = self._take(timeout)
        if batch:
            self.engine.process(batch)
            if self.publisher is not None:
                self.publisher.notify()
        self.telemetry.queue_depth.set(self.queue.qsize())
        self.heartbeat = time.monotonic()
        now = time.time()
        if now - self.last_summary >= self.cfg.summary_interval:
            self.summarize(now)
        if now - self.last_prune >= PRUNE_EVERY:
            self.prune(now)
        return len(batch)

    def shutdown(self) -> None:
        log.info("stopping: finishing the rows already received")
        for source in self.inputs:
            pause = getattr(source, "pause", None)
            if pause is not None:
                pause()
            elif getattr(source, "finite", False):
                source.stop()
        while self.step(0.05):
            pass
        for source in self.inputs:
            source.stop()
        while self.step(0.0):
            pass
        if self.publisher is not None:
            flushed = self.publisher.flush(self.cfg.shutdown_grace)
            depth = self.store.outbox_depth()[0]
            if not flushed:
                log.warning("%d message(s) stay in the outbox for the next start", depth)
            self.publisher.stop()
        if self.metrics is not None:
            self.metrics.stop()
        self.store.close()
        log.info("stopped")

    # -- periodic work --------------------------------------------------------------------------------
    def summarize(self, now: float) -> None:
        """One summary message per model on the summary topic."""
        counts, samples = self.telemetry.stats.take()
        caps = self.engine.new_interval()
        depth, size = self.store.outbox_depth()
        period = (self.last_summary, now)
        self.last_summary = now
        messages = []
        with self.store.transaction():
            for slot in self.slots:
                modes: dict[str, int] = {}
                active = 0
                for state in self.engine.assets.values():
                    ss = state.slots.get(slot.name)
                    if ss is None:
                        continue
                    if ss.mode != "primary":
                        modes[ss.mode] = modes.get(ss.mode, 0) + 1
                    active += int(ss.tracker is not None and ss.tracker.active)
                extra = {
                    "alarms": {"active": active},
                    "outbox": {
                        "messages": depth,
                        "bytes": size,
                        "dropped_total": self.store.meta("dropped"),
                    },
                    "degraded_assets": modes,
                    "assets": sum(1 for s in self.engine.assets.values() if slot.name in s.slots),
                    **caps,
                }
                body = summary_body(
                    slot.name, counts, samples, period, extra, self.sketches[slot.name].snapshot()
                )
                seq = self.store.bump("summary_seq")
                messages.append(self.messages.summary(seq, slot.name, slot.primary.info, body))
            self.store.add_messages(messages, now)
        if self.publisher is not None:
            self.publisher.notify()

    def prune(self, now: float) -> None:
        self.last_prune = now
        store = self.cfg.store
        with self.store.transaction():
            removed = self.store.prune_log(store.log_max_age, store.log_max_bytes, now)
        if removed:
            self.telemetry.log_rows_pruned.inc(removed)
        self.store.db.execute("PRAGMA wal_checkpoint(PASSIVE)")  # keep the WAL short for months
        self.outbox = self.store.outbox_depth()
        if self.publisher is None:
            self.telemetry.outbox_messages.set(self.outbox[0])
            self.telemetry.outbox_bytes.set(self.outbox[1])

    def health(self) -> dict[str, Any]:
        """``/healthz``: live (the engine loop turns), ready (started), and what is wrong."""
        age = time.monotonic() - self.heartbeat
        out: dict[str, Any] = {
            "live": age < 30.0,
            "ready": self.ready and not self.stopping.is_set(),
            "uptime_s": round(time.time() - self.started, 1),
            "engine_heartbeat_age_s": round(age, 2),
            "queue": self.queue.qsize(),
            "models": [s.describe() for s in self.slots],
            "inputs": {i.name: i.status() for i in self.inputs},
        }
        if self.publisher is not None:
            out["publisher"] = self.publisher.status()
        return out
