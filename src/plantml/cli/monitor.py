"""plantml-monitor: drift per operating condition, delayed-label performance, alerts.

    plantml-monitor report --bundle DIR [--since T] [--until T] [--out DIR]
                           (--store URL | [--predictions F] [--events F] [--inputs F] [--summaries F])
                           [--chunk 1d | --chunk-rows N] [--rules FILE] [--baseline]
    plantml-monitor watch  --bundle DIR --store URL [--rules FILE] [--interval 300]
                           [--sink log] [--sink https://...] [--sink mqtt://host:1883/topic]
                           [--out DIR] [--once | --iterations N]
    plantml-monitor rules  # the default rules, as YAML to copy and edit

``report`` writes monitor.json, monitor.md and the figures into --out.
``watch`` checks what arrived in the store since its last check, every
--interval seconds, keeps its CUSUM and alert state in the store, writes a
report per check and sends alerts (opened and resolved) to every sink.
Times (--since, --until) are ISO-8601 or numbers (cycles). Exit status 0,
or 2 with one ``error:`` line.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from plantml.cli.common import run_command
from plantml.cli.ingest import parse_duration
from plantml.edge.bundle import BundleError
from plantml.edge.preprocess import InputError
from plantml.monitoring import mqtt
from plantml.monitoring.errors import MonitoringError

log = logging.getLogger("plantml.monitor")


def _time(text: str | None) -> float | None:
    from plantml.monitoring.ingest import to_time

    if text is None:
        return None
    value = to_time(text)
    if value is None:
        raise MonitoringError(
            f"{text!r} is not a time: use ISO-8601 (2024-05-01T00:00) or a number"
        )
    return value


def _rules(args: argparse.Namespace):
    from plantml.monitoring.rules import load_rules

    rules = load_rules(args.rules)
    if getattr(args, "baseline", False):
        from plantml.monitoring.rules import parse_rule

        base = next((r for r in rules if r.metric == "input_drift"), None)
        rules.append(
            parse_rule(
                {
                    "name": "input_drift_pooled",
                    "metric": "input_drift",
                    "view": "pooled",
                    "severity": "info",
                    "alpha": base.alpha if base else 0.05,
                    "horizon": base.horizon if base else 200,
                }
            )
        )
    return rules


def _load(bundle_dir: str):
    from plantml.edge.bundle import load_bundle
    from plantml.monitoring.profile import load_profile

    bundle = load_bundle(bundle_dir)
    return bundle, load_profile(bundle)


def _report(args: argparse.Namespace) -> int:
    from plantml.edge.io import read_table
    from plantml.monitoring.analysis import Sources, run_checks
    from plantml.monitoring.ingest import (
        event_records,
        prediction_records,
        summary_file_records,
    )
    from plantml.monitoring.labels import EventLog
    from plantml.monitoring.report import write_report
    from plantml.monitoring.rows import monitor_rows
    from plantml.monitoring.store import Store, prediction_log_from_records

    bundle, profile = _load(args.bundle)
    since, until = _time(args.since), _time(args.until)
    sha = bundle.manifest.get("manifest_sha256")
    src = Sources()
    if args.store:
        if any((args.predictions, args.events, args.inputs, args.summaries)):
            raise MonitoringError(
                "give --store or files (--predictions, --events, --inputs), not both"
            )
        store = Store(args.store)
        src.summaries = store.summary_records(sha, since, until)
        src.predictions, _ = store.prediction_log(sha, since, until)
        src.events = store.event_log()
    else:
        if not any((args.predictions, args.inputs, args.summaries)):
            raise MonitoringError(
                "nothing to monitor: give --store URL, or --inputs (raw rows), --summaries "
                "(agent summaries) and/or --predictions (with --events for performance)"
            )
        if args.summaries:
            src.summaries = [
                r
                for r in summary_file_records(args.summaries)
                if _in(r["period_end"], since, until)
            ]
        if args.inputs:
            rows = monitor_rows(bundle, read_table(args.inputs))
            keep = [i for i, t in enumerate(rows.time) if _in(t, since, until)]
            src.rows = rows.take(keep)
        if args.predictions:
            records = [
                r
                for r in prediction_records(args.predictions, bundle)
                if _in(r["time"], since, until)
            ]
            src.predictions = prediction_log_from_records(records)
        if args.events:
            import numpy as np

            ev = event_records(args.events)
            src.events = EventLog(
                np.array([e["asset"] for e in ev], dtype=object),
                np.array([e["time"] for e in ev], dtype=float),
                np.array([e["kind"] for e in ev], dtype=object),
                np.array([np.nan if e["end_time"] is None else e["end_time"] for e in ev], float),
            )
    out = Path(args.out)
    every = parse_duration(args.chunk, bundle.input["time_kind"])
    horizon = args.horizon
    result = run_checks(
        bundle,
        profile,
        _rules(args),
        src,
        every=every,
        rows=args.chunk_rows,
        report_path=str((out / "monitor.md").resolve()),
        horizon=horizon,
        now=_time(args.now),
    )
    files = write_report(result, profile, out)
    headline = result["checks"][-1]["verdict"]["summary"] if result["checks"] else ""
    print(
        f"{result['chunks']} chunks, {result['rows']} rows, {len(result['alerts'])} alerts; "
        f"last chunk: {headline}"
    )
    print(f"wrote {', '.join(str(f) for f in files[:2])} and {len(files) - 2} figures")
    return 0


def _in(t, since, until) -> bool:
    return (since is None or t >= since) and (until is None or t < until)


def _watch(args: argparse.Namespace) -> int:
    from plantml.monitoring.watch import Watcher

    bundle, profile = _load(args.bundle)
    from plantml.monitoring.sinks import make_sinks
    from plantml.monitoring.store import Store

    sinks = make_sinks(args.sink or ["log"], mqtt.settings_from_args(args, "mqtt-"))
    watcher = Watcher(bundle, profile, _rules(args), Store(args.store), sinks, Path(args.out))
    iterations = 1 if args.once else args.iterations
    done = 0
    try:
        while iterations is None or done < iterations:
            result = watcher.step()
            done += 1
            if result is None:
                log.info("nothing new in the store")
            else:
                log.info(
                    "check %s: %s; %d alerts opened, %d resolved",
                    result["check"],
                    result["verdict"]["summary"],
                    len(result["alerts"]["opened"]),
                    len(result["alerts"]["resolved"]),
                )
            if iterations is None or done < iterations:
                time.sleep(args.interval)
    except KeyboardInterrupt:
        pass
    return 1 if watcher.failures else 0


def _print_rules(args: argparse.Namespace) -> int:
    import yaml

    from plantml.monitoring.rules import DEFAULT_RULES

    print(yaml.safe_dump({"rules": DEFAULT_RULES}, sort_keys=False), end="")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="plantml-monitor", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    r = sub.add_parser("report", help="a report over a time range")
    r.add_argument("--bundle", required=True, help="the bundle folder (with its reference profile)")
    r.add_argument("--since", help="first time (ISO-8601 or a number)")
    r.add_argument("--until", help="end time, excluded")
    r.add_argument("--store", help="SQLAlchemy URL or SQLite file written by plantml-ingest")
    r.add_argument("--predictions", help="plantml-edge predict output (CSV or Parquet)")
    r.add_argument("--events", help="events: asset, time, kind[, end_time] (CSV or Parquet)")
    r.add_argument("--inputs", help="raw input rows (CSV or Parquet)")
    r.add_argument("--summaries", help="agent summaries, one JSON object per line")
    r.add_argument("--chunk", help="chunk length: 1h, 1d, or a number of time units")
    r.add_argument("--chunk-rows", type=int, help="chunk by this many rows instead")
    r.add_argument("--rules", help="rules file (YAML or JSON); default: plantml-monitor rules")
    r.add_argument("--baseline", action="store_true", help="add the condition-blind (pooled) test")
    r.add_argument(
        "--horizon", type=float, help="failure horizon in log time units (seconds or cycles)"
    )
    r.add_argument("--now", help="labels are known up to this time (default: the latest record)")
    r.add_argument("--out", default="monitor", help="output folder (default ./monitor)")
    r.set_defaults(func=_report)
    w = sub.add_parser("watch", help="check periodically and send alerts")
    w.add_argument("--bundle", required=True)
    w.add_argument("--store", required=True)
    w.add_argument("--rules")
    w.add_argument("--baseline", action="store_true", help=argparse.SUPPRESS)
    w.add_argument("--interval", type=float, default=300.0, help="seconds between checks")
    w.add_argument("--sink", action="append", help="log, http(s)://..., mqtt(s)://host:port/topic")
    w.add_argument("--out", default="monitor", help="where the per-check reports go")
    w.add_argument("--once", action="store_true", help="one check, then exit")
    w.add_argument("--iterations", type=int, default=None, help="stop after this many checks")
    mqtt.add_arguments(w, "mqtt-")
    w.set_defaults(func=_watch)
    ru = sub.add_parser("rules", help="print the default rules")
    ru.set_defaults(func=_print_rules)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    return run_command(build_parser(), argv, (BundleError, InputError))


if __name__ == "__main__":
    sys.exit(main())
