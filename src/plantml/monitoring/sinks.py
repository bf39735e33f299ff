"""Where alerts go: the log, an HTTP webhook (JSON POST), an MQTT topic.

Every alert is sent as one JSON object (:func:`alert_payload`): what drifted,
in which condition, since when, how strongly, and the path of the report.
``--sink`` values of ``plantml-monitor watch``:

- ``log`` (default): one line per alert on the log (stderr);
- ``http://host/path`` or ``https://...``: POST with ``Content-Type: application/json``;
- ``mqtt://host:port/topic`` or ``mqtts://...`` (TLS): publish, QoS 1, not retained;
  the broker options (credentials, CA) are the ``--mqtt-*`` options.
"""

from __future__ import annotations

import json
import logging
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlparse

from plantml.monitoring.errors import MonitoringError
from plantml.monitoring.mqtt import MQTTSettings, connect

log = logging.getLogger("plantml.monitoring.alerts")


def show_time(value: Any, time_kind: str) -> str:
    """A time for people: ISO-8601 UTC for timestamps, the number for cycles."""
    if value is None:
        return "?"
    if time_kind == "datetime":
        try:
            return datetime.fromtimestamp(float(value), UTC).isoformat().replace("+00:00", "Z")
        except (TypeError, ValueError, OverflowError):
            return str(value)
    return f"{float(value):g}" if isinstance(value, int | float) else str(value)


def describe(alert: Mapping[str, Any], time_kind: str = "number") -> str:
    """One sentence: what, where, since when, how strongly."""
    d = alert.get("details") or {}
    where = "" if alert.get("condition") in (None, "*") else f" in condition {alert['condition']!r}"
    what = alert.get("signal") if alert.get("signal") not in (None, "*") else alert["metric"]
    since = show_time(alert.get("since"), time_kind)
    if alert["metric"] == "input_drift":
        parts = [
            f"mean shift {d['mean_shift']:+.2f} std" if d.get("mean_shift") is not None else ""
        ]
        if d.get("wasserstein") is not None:
            parts.append(f"Wasserstein {d['wasserstein']:.2f} std")
        if d.get("psi") is not None:
            parts.append(f"PSI {d['psi']:.2f}")
        parts.append(f"CUSUM {d.get('s', alert.get('value', 0)):.1f} (p {d.get('p', 1):.1e})")
        strength = ", ".join(p for p in parts if p)
        return f"input drift of {what}{where} since {since}: {strength}"
    return (
        f"{alert['rule']}: {alert['metric']} of {what}{where} is {alert['value']:.3g} "
        f"(threshold {alert.get('threshold')}) since {since}"
    )


def alert_payload(
    alert: Mapping[str, Any], bundle: Mapping[str, Any], time_kind: str
) -> dict[str, Any]:
    """The JSON object every sink sends."""
    return {
        "kind": "plantml-monitor-alert",
        "status": alert["status"],
        "severity": alert["severity"],
        "rule": alert["rule"],
        "metric": alert["metric"],
        "condition": alert.get("condition"),
        "signal": alert.get("signal"),
        "since": alert.get("since"),
        "since_text": show_time(alert.get("since"), time_kind),
        "opened": alert.get("opened"),
        "resolved": alert.get("resolved"),
        "value": alert.get("value"),
        "threshold": alert.get("threshold"),
        "details": alert.get("details"),
        "message": describe(alert, time_kind),
        "report": alert.get("report"),
        "model": dict(bundle),
        "id": alert.get("id"),
    }


def log_sink(payload: Mapping[str, Any]) -> None:
    level = {"critical": logging.ERROR, "warning": logging.WARNING}.get(
        payload["severity"], logging.INFO
    )
    state = "RESOLVED" if payload["status"] == "resolved" else payload["severity"].upper()
    log.log(level, "[%s] %s (report: %s)", state, payload["message"], payload.get("report"))


def webhook_sink(url: str, timeout: float = 10.0) -> Callable[[Mapping[str, Any]], None]:
    def send(payload: Mapping[str, Any]) -> None:
        body = json.dumps(payload, default=str).encode("utf-8")
        request = urllib.request.Request(
            url, data=body, headers={"Content-Type": "application/json"}, method="POST"
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                if response.status >= 300:
                    raise MonitoringError(f"webhook {url} answered HTTP {response.status}")
        except urllib.error.HTTPError as exc:
            raise MonitoringError(f"webhook {url} answered HTTP {exc.code}") from None
        except (urllib.error.URLError, OSError) as exc:
            raise MonitoringError(f"cannot reach webhook {url} ({exc})") from None

    return send


def mqtt_sink(url: str, settings: MQTTSettings) -> Callable[[Mapping[str, Any]], None]:
    parsed = urlparse(url)
    topic = parsed.path.lstrip("/")
    if not topic:
        raise MonitoringError(
            f"{url}: give the topic as the path, e.g. mqtt://broker:1883/plant/alerts"
        )
    settings = replace(
        settings,
        host=parsed.hostname or settings.host,
        port=parsed.port or settings.port,
        tls=settings.tls or parsed.scheme == "mqtts",
    )
    state: dict[str, Any] = {}

    def send(payload: Mapping[str, Any]) -> None:
        if "client" not in state:
            state["client"] = connect(settings)
        info = state["client"].publish(topic, json.dumps(payload, default=str), qos=1)
        info.wait_for_publish(timeout=10)
        if not info.is_published():
            raise MonitoringError(f"the MQTT broker did not acknowledge the alert on {topic}")

    return send


def make_sinks(
    specs: list[str], mqtt_settings: MQTTSettings | None = None
) -> list[tuple[str, Callable]]:
    """``(name, send)`` per ``--sink`` value (log, http(s)://..., mqtt(s)://...)."""
    out = []
    for spec in specs or ["log"]:
        scheme = urlparse(spec).scheme
        if spec == "log":
            out.append(("log", log_sink))
        elif scheme in ("http", "https"):
            out.append((spec, webhook_sink(spec)))
        elif scheme in ("mqtt", "mqtts"):
            out.append((spec, mqtt_sink(spec, mqtt_settings or MQTTSettings())))
        else:
            raise MonitoringError(
                f"unknown alert sink {spec!r}; use log, http(s)://host/path or mqtt://host:port/topic"
            )
    return out


def send_all(sinks: list[tuple[str, Callable]], payloads: list[Mapping[str, Any]]) -> list[str]:
    """Send every payload to every sink; returns the failures (a failing sink does not stop others)."""
    failures = []
    for payload in payloads:
        for name, send in sinks:
            try:
                send(payload)
            except MonitoringError as exc:
                failures.append(f"{name}: {exc}")
                log.error("alert not delivered to %s: %s", name, exc)
    return failures
