"""plantml-ingest: agents' MQTT messages or exported logs into the monitoring store.

    plantml-ingest mqtt  --store URL [--host H --port P --username U --password-file F
                         --ca-file CA --cert-file C --key-file K] [--duration S] [--max-messages N]
    plantml-ingest files --store URL [--bundle DIR] [--predictions FILE] [--events FILE]
                         [--summaries FILE.jsonl] [--inputs FILE [--chunk 1h | --chunk-rows N]]

``mqtt`` subscribes to ``plant/+/+/prediction``, ``plant/+/+/alarm`` and
``plant/+/_agent/summary`` (QoS 1) and writes in batches; a message seen
before (same id) is stored once. ``files`` reads a ``plantml-edge predict``
output (with ``--bundle``), an events file (asset, time, kind[, end_time]),
agent summaries (JSON lines) or raw input rows, sketched per chunk. The store
is a SQLAlchemy URL (a path means SQLite). Exit status 0, or 2 with one
``error:`` line.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Sequence

from plantml.cli.common import run_command
from plantml.edge.bundle import BundleError
from plantml.edge.preprocess import InputError
from plantml.monitoring import mqtt
from plantml.monitoring.errors import InputFileError, MonitoringError

log = logging.getLogger("plantml.ingest")


def parse_duration(text: str | None, time_kind: str = "datetime") -> float | None:
    """``30s``, ``15min``, ``1h``, ``1d`` -> seconds; a plain number is in the data's time units."""
    if text is None:
        return None
    units = {"s": 1.0, "min": 60.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
    raw = str(text).strip()
    for unit in sorted(units, key=len, reverse=True):
        if raw.endswith(unit) and raw[: -len(unit)].replace(".", "", 1).isdigit():
            if time_kind != "datetime":
                raise MonitoringError(
                    f"--chunk {raw}: this bundle's time is a number (cycles); give a plain number"
                )
            return float(raw[: -len(unit)]) * units[unit]
    try:
        value = float(raw)
    except ValueError:
        raise MonitoringError(
            f"{raw!r} is not a duration (e.g. 30s, 15min, 1h, 1d, or a number)"
        ) from None
    if value <= 0:
        raise MonitoringError(f"a duration must be > 0, got {raw}")
    return value


def _mqtt(args: argparse.Namespace) -> int:
    from plantml.monitoring.ingest import TOPICS, parse_message
    from plantml.monitoring.store import Store

    store = Store(args.store)
    settings = mqtt.settings_from_args(args)
    sub = mqtt.Subscription(settings, args.topic or list(TOPICS))
    print(
        f"subscribed to {', '.join(sub.topics)} on {settings.host}:{settings.port_number}",
        flush=True,
    )
    buffers: dict[str, list] = {"prediction": [], "event": [], "summary": []}
    writers = {
        "prediction": store.add_predictions,
        "event": store.add_events,
        "summary": store.add_summaries,
    }
    seen = stored = bad = 0
    last_flush = time.monotonic()
    end = None if args.duration is None else time.monotonic() + args.duration

    def flush() -> int:
        added = 0
        for kind, rows in buffers.items():
            if rows:
                added += writers[kind](rows)
                rows.clear()
        return added

    try:
        while True:
            if end is not None and time.monotonic() >= end:
                break
            if args.max_messages and seen >= args.max_messages:
                break
            message = sub.get(timeout=0.2)
            if message is not None:
                seen += 1
                try:
                    kind, record = parse_message(*message)
                    buffers[kind].append(record)
                except (InputFileError, ValueError, TypeError) as exc:
                    bad += 1
                    log.warning("skipped a message: %s", exc)
            pending = sum(len(v) for v in buffers.values())
            if pending >= args.batch or (
                pending and time.monotonic() - last_flush >= args.flush_seconds
            ):
                stored += flush()
                last_flush = time.monotonic()
    except KeyboardInterrupt:
        pass
    finally:
        stored += flush()
        sub.close()
    print(f"{seen} messages received, {stored} new records stored, {bad} skipped", flush=True)
    return 0


def _files(args: argparse.Namespace) -> int:
    from plantml.edge.bundle import load_bundle
    from plantml.monitoring import ingest
    from plantml.monitoring.profile import load_profile
    from plantml.monitoring.store import Store

    if not any((args.predictions, args.events, args.summaries, args.inputs)):
        raise MonitoringError(
            "nothing to ingest: give --predictions, --events, --summaries or --inputs"
        )
    bundle = load_bundle(args.bundle) if args.bundle else None
    if (args.predictions or args.inputs) and bundle is None:
        raise MonitoringError("--predictions and --inputs need --bundle (the model they come from)")
    store = Store(args.store)
    done = []
    if args.predictions:
        n = store.add_predictions(ingest.prediction_records(args.predictions, bundle, args.site))
        done.append(f"{n} predictions")
    if args.events:
        n = store.add_events(ingest.event_records(args.events, args.site))
        done.append(f"{n} events")
    if args.summaries:
        n = store.add_summaries(ingest.summary_file_records(args.summaries))
        done.append(f"{n} summaries")
    if args.inputs:
        profile = load_profile(bundle)
        every = parse_duration(args.chunk, bundle.input["time_kind"])
        records = ingest.sketch_records(
            args.inputs, bundle, profile, every, args.chunk_rows, args.site
        )
        n = store.add_summaries(records)
        done.append(f"{n} sketches of input rows")
    print(f"stored {', '.join(done)} (records seen before are skipped) in {store.safe_url}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="plantml-ingest", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("mqtt", help="subscribe to the agents' topics")
    p.add_argument("--store", required=True, help="SQLAlchemy URL or SQLite file")
    p.add_argument(
        "--topic", action="append", help="topic filter (repeatable; default: the agents')"
    )
    p.add_argument("--batch", type=int, default=200, help="records per write")
    p.add_argument("--flush-seconds", type=float, default=2.0, help="longest wait before a write")
    p.add_argument("--duration", type=float, default=None, help="stop after this many seconds")
    p.add_argument("--max-messages", type=int, default=None, help="stop after this many messages")
    mqtt.add_arguments(p)
    p.set_defaults(func=_mqtt)
    f = sub.add_parser("files", help="read exported logs and files")
    f.add_argument("--store", required=True, help="SQLAlchemy URL or SQLite file")
    f.add_argument("--bundle", help="bundle folder (for predictions and input rows)")
    f.add_argument("--predictions", help="plantml-edge predict output (CSV or Parquet)")
    f.add_argument("--events", help="events: asset, time, kind[, end_time, note] (CSV or Parquet)")
    f.add_argument("--summaries", help="agent summaries, one JSON object per line")
    f.add_argument("--inputs", help="raw input rows as fed to the model (CSV or Parquet)")
    f.add_argument(
        "--chunk", help="sketch input rows per period: 1h, 1d, or a number of time units"
    )
    f.add_argument("--chunk-rows", type=int, help="sketch input rows per this many rows")
    f.add_argument("--site", help="site name to record")
    f.set_defaults(func=_files)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    return run_command(build_parser(), argv, (BundleError, InputError))


if __name__ == "__main__":
    sys.exit(main())
