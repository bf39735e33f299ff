"""``plantml-agent status``: the metrics and health of a running agent as tables.

Reads ``/metrics`` and ``/healthz`` from the agent's endpoint; when the agent
is not running, reads its state file instead (outbox depth, logged
predictions, recent rejected rows).
"""

from __future__ import annotations

import json
import math
import urllib.error
import urllib.request
from collections import defaultdict
from typing import Any

from prometheus_client.parser import text_string_to_metric_families


def table(headers: list[str], rows: list[list[Any]]) -> str:
    """A plain text table (no colours: it ends up in logs and tickets)."""
    cells = [[str(h) for h in headers]] + [[_fmt(v) for v in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(cells[0], widths, strict=True)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    for row in cells[1:]:
        lines.append("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    return "\n".join(lines)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        if value.is_integer() and abs(value) < 1e15:
            return str(int(value))
        return f"{value:.4g}"
    return "" if value is None else str(value)


def fetch(url: str, timeout: float = 5.0) -> tuple[str, dict[str, Any]]:
    """(metrics text, health dict) from an agent's endpoint ``url`` (http://host:port)."""
    base = url.rstrip("/")
    with urllib.request.urlopen(f"{base}/metrics", timeout=timeout) as response:
        metrics = response.read().decode("utf-8")
    try:
        with urllib.request.urlopen(f"{base}/healthz", timeout=timeout) as response:
            health = json.loads(response.read())
    except urllib.error.HTTPError as exc:  # 503: not ready, but the body is the same
        health = json.loads(exc.read())
    return metrics, health


def parse(metrics_text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    """Samples by name: ``{name: [(labels, value), ...]}``."""
    out: dict[str, list[tuple[dict[str, str], float]]] = defaultdict(list)
    for family in text_string_to_metric_families(metrics_text):
        for sample in family.samples:
            out[sample.name].append((dict(sample.labels), float(sample.value)))
    return out


def histogram_quantile(
    samples: list[tuple[dict[str, str], float]], q: float, **match: str
) -> float | None:
    """Prometheus-style quantile estimate from ``_bucket`` samples (linear inside a bucket)."""
    buckets = sorted(
        (float(labels["le"]), value)
        for labels, value in samples
        if all(labels.get(k) == v for k, v in match.items())
    )
    if not buckets or buckets[-1][1] == 0:
        return None
    rank = q * buckets[-1][1]
    lower_bound, lower_count = 0.0, 0.0
    for bound, count in buckets:
        if count >= rank:
            if math.isinf(bound):
                return lower_bound
            share = (rank - lower_count) / (count - lower_count) if count > lower_count else 0.0
            return lower_bound + (bound - lower_bound) * share
        lower_bound, lower_count = bound, count
    return lower_bound


def render(metrics_text: str, health: dict[str, Any], url: str) -> str:
    """The status report of a running agent."""
    m = parse(metrics_text)

    def rows(name: str, *labels: str) -> list[list[Any]]:
        return [
            [*(lab.get(k, "") for k in labels), v]
            for lab, v in sorted(m.get(name, []), key=lambda x: str(x[0]))
        ]

    up = health.get("uptime_s", 0)
    parts = [
        f"plantml-agent at {url}: live {'yes' if health.get('live') else 'NO'}, ready "
        f"{'yes' if health.get('ready') else 'NO'}, up {up:.0f} s, queue {health.get('queue', 0)}"
    ]
    info = [
        [lab["model"], lab["role"], lab["bundle"], lab["version"], lab["bundle_sha256"][:12]]
        for lab, _ in m.get("plantml_agent_model_info", [])
    ]
    parts.append(table(["model", "role", "bundle", "version", "sha256"], info))
    inputs = [
        [
            name,
            s.get("type"),
            s.get("connected", ""),
            s.get("messages", s.get("rows", "")),
            s.get("error") or "",
        ]
        for name, s in health.get("inputs", {}).items()
    ]
    parts.append(table(["input", "type", "connected", "messages/rows", "error"], inputs))
    if "publisher" in health:
        p = health["publisher"]
        parts.append(
            table(
                ["publisher", "connected", "connects", "error"],
                [["mqtt", p["connected"], p["connects"], p["error"] or ""]],
            )
        )
    parts.append(
        table(["input", "rows received"], rows("plantml_agent_rows_received_total", "input"))
    )
    parts.append(
        table(
            ["model", "reason", "rows rejected"],
            rows("plantml_agent_rows_rejected_total", "model", "reason"),
        )
    )
    parts.append(
        table(
            ["model", "mode", "predictions"],
            rows("plantml_agent_predictions_total", "model", "mode"),
        )
    )
    parts.append(
        table(
            ["model", "event", "alarm events"],
            rows("plantml_agent_alarm_events_total", "model", "event"),
        )
    )
    parts.append(
        table(
            ["model", "mode", "degraded assets"],
            rows("plantml_agent_degraded_assets", "model", "mode"),
        )
    )
    latency = []
    for name, key, label in (
        ("plantml_agent_inference_seconds_bucket", "model", "inference"),
        ("plantml_agent_end_to_end_seconds_bucket", "kind", "end to end"),
        ("plantml_agent_delivery_seconds_bucket", "kind", "delivery"),
    ):
        for value in sorted({lab[key] for lab, _ in m.get(name, [])}):
            p50, p99 = (histogram_quantile(m[name], q, **{key: value}) for q in (0.5, 0.99))
            if p50 is not None:
                latency.append([label, value, p50, p99])
    parts.append(table(["latency", "of", "p50 s", "p99 s"], latency))
    single = [
        ["outbox messages", "plantml_agent_outbox_messages"],
        ["outbox bytes", "plantml_agent_outbox_bytes"],
        ["outbox dropped", "plantml_agent_outbox_dropped_total"],
        ["queue depth", "plantml_agent_queue_depth"],
        ["resident memory bytes", "process_resident_memory_bytes"],
        ["cpu seconds", "process_cpu_seconds_total"],
    ]
    parts.append(
        table(["gauge", "value"], [[label, m[name][0][1]] for label, name in single if m.get(name)])
    )
    parts.append(table(["client", "connected"], rows("plantml_agent_broker_connected", "client")))
    errors = rows("plantml_agent_connection_errors_total", "client", "reason")
    if errors:
        parts.append(table(["client", "reason", "connection errors"], errors))
    return "\n\n".join(parts)


def rejected_table(rejected: list[dict[str, Any]]) -> str:
    """The most recent rejected rows (from the state file), newest first."""
    keys = ("source", "asset", "model", "column", "reason")
    return table(
        ["recent rejected: source", "asset", "model", "column", "reason", "message"],
        [[*(r[k] for k in keys), r["message"][:80]] for r in rejected],
    )


def render_offline(counts: dict[str, int], rejected: list[dict[str, Any]], path: str) -> str:
    """What the state file says when the agent is not running."""
    parts = [f"state file {path} (agent not reachable)"]
    parts.append(table(["state", "value"], [[k.replace("_", " "), v] for k, v in counts.items()]))
    if rejected:
        parts.append(rejected_table(rejected))
    return "\n\n".join(parts)
