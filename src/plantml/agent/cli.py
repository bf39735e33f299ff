"""plantml-agent: the on-device service (numpy + onnxruntime, no torch).

    plantml-agent run          --config agent.yaml [--exit-when-inputs-end] [--log-level info]
    plantml-agent check-config --config agent.yaml     # validate, verify bundles, print the plan
    plantml-agent status       --config agent.yaml     # or --url http://127.0.0.1:9108

Exit status: 0 ok; 2 when the config or a bundle cannot be used (one ``error:``
line on stderr naming the key or file and the fix); 1 when ``status`` finds the
agent not live.
"""

from __future__ import annotations

import argparse
import logging
import sys
import urllib.error
from collections.abc import Sequence

from plantml.agent.config import AgentConfig, FileInputConfig, MQTTInputConfig, load_config
from plantml.agent.errors import AgentError
from plantml.edge import BundleError


def _run(args: argparse.Namespace) -> int:
    from plantml.agent.service import Service

    service = Service(load_config(args.config), exit_when_inputs_end=args.exit_when_inputs_end)
    service.install_signal_handlers()
    service.run()
    return 0


def _plan(cfg: AgentConfig) -> list[str]:
    from plantml.agent.models import ModelSlot

    lines = [f"site {cfg.site}, agent {cfg.agent_id}, state {cfg.store.path}"]
    for i, m in enumerate(cfg.models):
        slot = ModelSlot(m, i)
        b = slot.primary.bundle
        rule = slot.primary.rule
        alarm = "none (no threshold)"
        if rule is not None:
            alarm = (
                f"{b.output_name} {'>=' if rule.direction == 'above' else '<='} {rule.raise_at:g} "
                f"(clear {rule.clear_at:g}), {rule.k} of {rule.n}, min {rule.min_duration:g}, "
                f"cooldown {rule.cooldown:g}"
            )
        deg = m.degradation
        stale = (
            "off"
            if deg.stale_after is None
            else f"after {deg.stale_after:g}, then {' > '.join(deg.on_stale)}"
        )
        lines += [
            f"model {slot.name}: bundle {b.name} {b.version} ({len(b.manifest['files'])} files verified), "
            f"assets {', '.join(m.assets)}",
            f"  reads {', '.join(slot.sensors)}; window {b.window_length}, max gap {b.max_gap}",
            f"  alarm: {alarm}",
            f"  stale sensors: {stale}; fallbacks: "
            + (
                ", ".join(f"without {'+'.join(sorted(r.without))}" for r in slot.fallbacks)
                or "none"
            ),
        ]
    for i in cfg.inputs:
        if isinstance(i, MQTTInputConfig):
            lines.append(
                f"input {i.name}: mqtt {i.topic.replace('{site}', cfg.site)} (QoS {i.qos})"
            )
        elif isinstance(i, FileInputConfig):
            lines.append(f"input {i.name}: file {i.path} ({i.format}, rate {i.rate or 'max'})")
        else:
            lines.append(
                f"input {i.name}: opcua {i.endpoint}, {sum(len(n) for n in i.assets.values())} nodes"
            )
    if cfg.mqtt is not None:
        tls = "TLS" if cfg.mqtt.tls else "no TLS"
        lines.append(f"broker {cfg.mqtt.host}:{cfg.mqtt.port} ({tls}), topics:")
        lines += [f"  {k}: {v.replace('{site}', cfg.site)}" for k, v in cfg.mqtt.topics.items()]
    else:
        lines.append("no broker: predictions go to the local prediction log only")
    if cfg.metrics_port is not None:
        lines.append(f"metrics on http://{cfg.metrics_host}:{cfg.metrics_port}/metrics")
    return lines


def _check(args: argparse.Namespace) -> int:
    print("\n".join(_plan(load_config(args.config))))
    print("ok: config valid")
    return 0


def _status(args: argparse.Namespace) -> int:
    from plantml.agent.status import fetch, rejected_table, render, render_offline

    cfg = load_config(args.config) if args.config else None
    url = args.url
    if url is None:
        if cfg is None or cfg.metrics_port is None:
            print(
                "error: give --url, or --config of an agent with metrics enabled", file=sys.stderr
            )
            return 2
        url = f"http://{cfg.metrics_host}:{cfg.metrics_port}"
    rejected = []
    store = None
    if cfg is not None and cfg.store.path.is_file():
        from plantml.agent.store import Store

        store = Store(cfg.store.path, cfg.store.synchronous)
        rejected = store.recent_rejected(args.rejected)
    try:
        metrics, health = fetch(url)
    except (urllib.error.URLError, OSError) as exc:
        print(
            f"agent not reachable at {url} ({exc}); is it running? (metrics.host/port)",
            file=sys.stderr,
        )
        if store is None:
            return 1
        print(render_offline(store.counts(), rejected, str(cfg.store.path)))
        return 1
    print(render(metrics, health, url))
    if rejected:
        print()
        print(rejected_table(rejected))
    return 0 if health.get("live") else 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="plantml-agent",
        description="The on-device service: sensor rows in (MQTT, OPC UA, files), predictions and "
        "alarms out (MQTT), offline outbox, Prometheus metrics. No torch.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser(
        "run", help="run the agent until SIGTERM", description="run the agent until SIGTERM"
    )
    p.add_argument("--config", required=True, help="agent.yaml (or .toml)")
    p.add_argument(
        "--exit-when-inputs-end",
        action="store_true",
        help="stop once every input is a finished file (replays, tests)",
    )
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    p.set_defaults(func=_run)
    p = sub.add_parser("check-config", help="validate the config and verify the bundles")
    p.add_argument("--config", required=True)
    p.set_defaults(func=_check)
    p = sub.add_parser("status", help="print a running agent's metrics and health as tables")
    p.add_argument("--config", help="agent.yaml: finds the endpoint and the state file")
    p.add_argument("--url", help="the agent's metrics endpoint, e.g. http://127.0.0.1:9108")
    p.add_argument("--rejected", type=int, default=10, help="recent rejected rows to list")
    p.set_defaults(func=_status)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=getattr(logging, getattr(args, "log_level", "info").upper()),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("asyncua").setLevel(logging.WARNING)
    try:
        return args.func(args)
    except (AgentError, BundleError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
