"""Prometheus metrics and the health endpoint (``/metrics``, ``/healthz``), loopback by default.

:class:`Telemetry` is the one place the agent counts things: each call updates
the Prometheus metric and the interval statistics the periodic summary
reports (:class:`plantml.agent.summary.IntervalStats`). Metric names follow
Prometheus conventions (``_total`` counters, ``_seconds`` histograms); the list
is in the README section "Edge agent".
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    generate_latest,
)

from plantml.agent.errors import AgentConfigError
from plantml.agent.summary import IntervalStats

LATENCY_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)
DELIVERY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 3600)


class Telemetry:
    """Counters, gauges and histograms of one agent process."""

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        ProcessCollector(registry=r)  # process_resident_memory_bytes, process_cpu_seconds_total
        self.stats = IntervalStats()
        self.rows_received = Counter(
            "plantml_agent_rows_received", "Rows received, by input", ["input"], registry=r
        )
        self.rows_rejected = Counter(
            "plantml_agent_rows_rejected",
            "Rows rejected, by model ('' before routing) and reason",
            ["model", "reason"],
            registry=r,
        )
        self.predictions = Counter(
            "plantml_agent_predictions",
            "Predictions made, by model and mode (primary, fallback, rule, stopped)",
            ["model", "mode"],
            registry=r,
        )
        self.alarm_events = Counter(
            "plantml_agent_alarm_events",
            "Alarm events, by model and event",
            ["model", "event"],
            registry=r,
        )
        self.alarms_active = Gauge(
            "plantml_agent_alarms_active", "Assets with an active alarm", ["model"], registry=r
        )
        self.inference = Histogram(
            "plantml_agent_inference_seconds",
            "Time to feed one row and run the model when a window is due",
            ["model"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.end_to_end = Histogram(
            "plantml_agent_end_to_end_seconds",
            "Row timestamp to broker acknowledgement of the message it caused (timestamped rows)",
            ["kind"],
            buckets=DELIVERY_BUCKETS,
            registry=r,
        )
        self.delivery = Histogram(
            "plantml_agent_delivery_seconds",
            "Row received by the agent to broker acknowledgement of the message it caused",
            ["kind"],
            buckets=DELIVERY_BUCKETS,
            registry=r,
        )
        self.published = Counter(
            "plantml_agent_messages_published",
            "Messages acknowledged by the broker",
            ["kind"],
            registry=r,
        )
        self.outbox_messages = Gauge(
            "plantml_agent_outbox_messages", "Messages waiting in the outbox", registry=r
        )
        self.outbox_bytes = Gauge(
            "plantml_agent_outbox_bytes", "Bytes waiting in the outbox", registry=r
        )
        self.outbox_dropped = Counter(
            "plantml_agent_outbox_dropped",
            "Oldest outbox messages dropped at the size bound",
            registry=r,
        )
        self.broker_connected = Gauge(
            "plantml_agent_broker_connected",
            "1 while connected to the broker, by client (publisher, input name)",
            ["client"],
            registry=r,
        )
        self.broker_errors = Counter(
            "plantml_agent_connection_errors",
            "Failed or lost connections, by client and reason (auth, tls, network, ...)",
            ["client", "reason"],
            registry=r,
        )
        self.model_info = Gauge(
            "plantml_agent_model_info",
            "Loaded bundles (value 1)",
            ["model", "bundle", "version", "bundle_sha256", "role"],
            registry=r,
        )
        self.degraded = Gauge(
            "plantml_agent_degraded_assets",
            "Assets served in a degraded mode, by model and mode",
            ["model", "mode"],
            registry=r,
        )
        self.assets = Gauge("plantml_agent_assets", "Assets seen, by model", ["model"], registry=r)
        self.queue_depth = Gauge(
            "plantml_agent_queue_depth", "Rows waiting to be processed", registry=r
        )
        self.log_rows_pruned = Counter(
            "plantml_agent_prediction_log_pruned",
            "Prediction-log rows removed by retention",
            registry=r,
        )

    # -- events (each updates Prometheus and the summary's interval statistics) --------------------
    def received(self, input_name: str, n: int = 1) -> None:
        self.rows_received.labels(input_name).inc(n)
        self.stats.add("rows_received", "", n)

    def rejected(self, model: str, reason: str) -> None:
        self.rows_rejected.labels(model, reason).inc()
        self.stats.add("rejected", model, 1, reason)

    def predicted(self, model: str, mode: str, seconds: float | None) -> None:
        self.predictions.labels(model, mode).inc()
        self.stats.add("predictions", model, 1, mode)
        if seconds is not None:
            self.inference.labels(model).observe(seconds)
            self.stats.sample("inference_seconds", model, seconds)

    def row_accepted(self, model: str, raw_alarm: bool | None) -> None:
        self.stats.add("rows", model, 1)
        if raw_alarm:
            self.stats.add("raw_alarms", model, 1)

    def alarm(self, model: str, event: str) -> None:
        self.alarm_events.labels(model, event).inc()
        self.stats.add("alarm_events", model, 1, event)

    def acked(self, kind: str, now: float, received: float | None, row_time: float | None) -> None:
        self.published.labels(kind).inc()
        if received is not None:
            self.delivery.labels(kind).observe(max(now - received, 0.0))
            self.stats.sample("delivery_seconds", "", max(now - received, 0.0))
        if row_time is not None:
            self.end_to_end.labels(kind).observe(max(now - row_time, 0.0))
            self.stats.sample("end_to_end_seconds", "", max(now - row_time, 0.0))

    def connection(self, client: str, connected: bool, reason: str | None = None) -> None:
        self.broker_connected.labels(client).set(1 if connected else 0)
        if reason:
            self.broker_errors.labels(client, reason).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _Handler(BaseHTTPRequestHandler):
    telemetry: Telemetry
    health: Callable[[], dict[str, Any]]

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path == "/metrics":
            self._send(200, CONTENT_TYPE_LATEST, self.telemetry.render())
        elif path in ("/healthz", "/livez", "/readyz"):
            health = self.health()
            ok = health["live"] if path == "/livez" else health["live"] and health["ready"]
            body = json.dumps(health, default=str).encode()
            self._send(200 if ok else 503, "application/json", body)
        else:
            self._send(404, "text/plain", b"plantml-agent: /metrics, /healthz, /livez, /readyz\n")

    def _send(self, code: int, ctype: str, body: bytes) -> None:
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # quiet: no line per scrape
        return


class MetricsServer:
    """``/metrics`` and ``/healthz`` on ``host:port`` (127.0.0.1 by default), on a thread."""

    def __init__(
        self, telemetry: Telemetry, health: Callable[[], dict[str, Any]], host: str, port: int
    ):
        handler = type(
            "Handler", (_Handler,), {"telemetry": telemetry, "health": staticmethod(health)}
        )
        try:
            self.server = ThreadingHTTPServer((host, port), handler)
        except OSError as exc:
            raise AgentConfigError(
                f"metrics: cannot listen on {host}:{port} ({exc.strerror}); another process "
                "uses the port (another agent?): stop it or change metrics.port"
            ) from None
        self.server.daemon_threads = True
        self.address = self.server.server_address
        self.thread = threading.Thread(
            target=self.server.serve_forever, name="metrics", daemon=True
        )

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
