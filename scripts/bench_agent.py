"""plantml-agent through a real broker: throughput, end-to-end latency, CPU, memory, zero loss.

Everything runs on this machine: Mosquitto on loopback; a producer process
publishing one MQTT message (QoS 1) per row for ``--assets`` assets; the agent
(``plantml-agent run``, a subprocess, MQTT in and out); a consumer process
subscribed to the predictions (QoS 1, persistent session). Rows are generated
around the bundle's normalization statistics (values do not change the cost);
their timestamps advance by the bundle's sampling period per row.

1. **fill**: the first ``window_length - 1`` rows of every asset as fast as the
   producer goes (no prediction is due yet): the agent's sustained rows/s
   through the broker (it is one Python process: rows/s at 100 % of a core);
2. **steady**: ``--rate`` rows/s per asset for ``--duration`` s, every row now
   completing a window: end-to-end latency (the producer's scheduled send to the
   consumer's receipt of the prediction, p50/p99), the agent's CPU share, RSS
   after the fill and at the end (the soak), with the broker stopped for
   ``--outage`` s at ``--outage-at`` s;
3. **check**: every prediction arrived exactly once after deduplication by id,
   in order per asset (duplicates are counted);
4. **plantml-edge stream** on the same rows read from a CSV file (no broker):
   rows/s and CPU seconds per row, against the agent's CPU seconds per row over
   the same rows (the agent's overhead as a ratio).

The largest fleet one core keeps up with at 1 row/s is 1 / (the agent's CPU
seconds per row in the steady phase, where every row is predicted, published,
logged and acknowledged). On a shared machine the wall-clock numbers (rows/s,
latency) depend on the load; the load average is reported with them.

Reproduce (the README numbers; 2 shared cores)::

    plantml-train experiment=synthetic_failure logger=csv trainer.max_epochs=8
    plantml-export ckpt_path=outputs/synthetic_failure/runs/<time> export=int8
    OMP_NUM_THREADS=1 python scripts/bench_agent.py --bundle export/synthetic_failure-int8/bundle \\
        --assets 1000 --duration 120 --outage 30 --outage-at 30
    OMP_NUM_THREADS=1 python scripts/bench_agent.py --bundle export/synthetic_failure-int8/bundle \\
        --assets 1000 --duration 600 --outage 30 --outage-at 60          # the 10-minute soak

The broker launcher and MQTT clients are the tests' (``tests/agent_support.py``).
"""

from __future__ import annotations

import argparse
import csv
import json
import multiprocessing as mp
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.agent_support import (  # noqa: E402
    AgentProcess,
    Broker,
    InOrder,
    connect,
    free_port,
    metric_value,
    mqtt_client,
    wait_for,
    write_config,
)

from plantml.edge import load_bundle  # noqa: E402

SITE = "bench"
START = 1_714_521_600.0  # 2024-05-01T00:00:00Z


def asset_name(i: int) -> str:
    return f"p{i:05d}"


class Rows:
    """Deterministic rows: asset i, step k -> (ISO time, {column: value})."""

    def __init__(self, bundle, n_assets: int, steps: int, seed: int = 0):
        self.bundle = bundle
        self.period = float(bundle.input["sampling_period"] or 1.0)
        offset, scale = bundle.offset[-1], bundle.scale[-1]
        rng = np.random.default_rng(seed)
        walk = np.cumsum(rng.normal(0, 0.05, (n_assets, steps, len(offset))), axis=1)
        self.values = offset + scale * (walk + rng.normal(0, 0.3, (n_assets, 1, len(offset))))
        self.features = bundle.feature_columns
        cond = bundle.conditions
        self.condition = None
        if cond["mode"] == "column":
            self.condition = (cond["column"], [str(c) for c in cond["categories"]])

    def time(self, k: int) -> str:
        from datetime import UTC, datetime

        return (
            datetime.fromtimestamp(START + k * self.period, UTC).isoformat().replace("+00:00", "Z")
        )

    def row(self, i: int, k: int) -> dict:
        values = {
            c: round(float(v), 5) for c, v in zip(self.features, self.values[i, k], strict=True)
        }
        if self.condition is not None:
            column, categories = self.condition
            values[column] = categories[i % len(categories)]
        return {"ts": self.time(k), "values": values}


def produce(port, bundle_path, n_assets, steps, first, last, rate, t0, seed, out):
    """Publish steps [first, last) of every asset; paced at ``rate`` rows/s per asset when t0 > 0."""
    rows = Rows(load_bundle(bundle_path, verify=False), n_assets, steps, seed)
    client = mqtt_client(f"bench-producer-{first}")
    connect(client, port)
    sender = InOrder(client)  # a device holds its rows while the broker is away
    late = 0.0
    start = time.time()
    for k in range(first, last):
        for i in range(n_assets):
            if t0:
                due = t0 + (k - first) / rate + i / (n_assets * rate)
                wait = due - time.time()
                if wait > 0:
                    time.sleep(wait)
                else:
                    late = max(late, -wait)
            payload = json.dumps(rows.row(i, k))
            sender.publish(f"plant/{SITE}/{asset_name(i)}/telemetry", payload)
    sent = time.time()
    wait_for(lambda: not client._out_messages, 600, "the producer's queue to drain", every=0.2)
    client.loop_stop()
    client.disconnect()
    out.put({"published_s": sent - start, "acked_s": time.time() - start, "max_late_s": late})


def consume(port, ready, stop, out, n_assets, first, rate, period, t0_steady):
    """Collect predictions; report counts, duplicates, order and end-to-end latency."""
    client = mqtt_client("bench-consumer")
    seen, order_ok, duplicates, lat, dues = {}, True, 0, [], []
    last_time: dict[str, float] = {}

    def on_message(c, u, message):
        nonlocal order_ok, duplicates
        now = time.time()
        m = json.loads(message.payload)
        if m["id"] in seen:
            duplicates += 1
            return
        seen[m["id"]] = 1
        from datetime import datetime

        t = datetime.fromisoformat(m["time"]).timestamp()
        asset = m["asset"]
        if asset in last_time and t <= last_time[asset]:
            order_ok = False
        last_time[asset] = t
        k = round((t - START) / period)
        if k >= first and t0_steady.value > 0:
            i = int(asset[1:])
            due = t0_steady.value + (k - first) / rate + i / (n_assets * rate)
            lat.append(now - due)
            dues.append(due - t0_steady.value)

    client.on_message = on_message
    client.on_connect = lambda c, u, f, rc, p: c.subscribe(f"plant/{SITE}/+/prediction", qos=1)
    connect(client, port, clean=False)
    ready.set()
    while not stop.is_set():
        time.sleep(0.2)
    client.loop_stop()
    out.put(
        {
            "unique": len(seen),
            "duplicates": duplicates,
            "in_order": order_ok,
            "latency": np.asarray(lat),
            "due": np.asarray(dues),
        }
    )


def latency(cons: dict, before: float | None) -> dict:
    """p50/p99/max end-to-end latency, over all steady rows and over those due before ``before`` s."""
    lat, due = cons.pop("latency"), cons.pop("due")
    out = {}
    for name, mask in (
        ("all", np.ones(len(lat), bool)),
        ("before_outage", due < (before or np.inf)),
    ):
        part = lat[mask]
        if len(part):
            p50, p99 = np.percentile(part, [50, 99])
            out[name] = {
                "n": len(part),
                "p50_s": float(p50),
                "p99_s": float(p99),
                "max_s": float(part.max()),
            }
    return out


def proc_stats(pid: int) -> tuple[float, int]:
    """(CPU seconds, RSS bytes) of a process from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    rss = int(fields[21]) * os.sysconf("SC_PAGE_SIZE")
    return cpu, rss


def edge_stream(bundle: Path, rows: Rows, n_assets: int, steps: int, folder: Path) -> dict:
    """plantml-edge stream on the same rows from a CSV: rows/s and CPU seconds per row."""
    b = rows.bundle
    path = folder / "rows.csv"
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        cond = [rows.condition[0]] if rows.condition else []
        writer.writerow([b.asset_column, b.time_column, *rows.features, *cond])
        for k in range(steps):
            for i in range(n_assets):
                r = rows.row(i, k)
                writer.writerow(
                    [
                        asset_name(i),
                        r["ts"],
                        *[r["values"][c] for c in rows.features],
                        *[r["values"][c] for c in cond],
                    ]
                )
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run(
        [
            str(Path(sys.executable).parent / "plantml-edge"),
            "stream",
            "--bundle",
            str(bundle),
            "--input",
            str(path),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise SystemExit(f"plantml-edge stream failed: {proc.stderr[-2000:]}")
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    n = n_assets * steps
    return {
        "rows": n,
        "wall_s": wall,
        "rows_per_s": n / wall,
        "cpu_s_per_row": cpu / n,
        "summary": proc.stderr.strip().splitlines()[-1],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bundle", type=Path, required=True, help="an exported bundle (LSTM int8)")
    parser.add_argument("--assets", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=1.0, help="rows per second per asset")
    parser.add_argument("--duration", type=float, default=120, help="steady phase, seconds")
    parser.add_argument("--outage", type=float, default=30, help="broker down this long (0: none)")
    parser.add_argument("--outage-at", type=float, default=30, help="seconds into the steady phase")
    parser.add_argument(
        "--edge-steps",
        type=int,
        help="rows per asset for plantml-edge stream (default: all the agent got; 0: skip)",
    )
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args()
    if not (args.bundle / "manifest.json").is_file():
        raise SystemExit(
            f"{args.bundle} is not a bundle; make one with the commands in this script's docstring"
        )
    bundle = load_bundle(args.bundle)
    length = bundle.window_length
    first = length - 1  # steps before the steady phase
    steady_steps = round(args.duration * args.rate)
    steps = first + steady_steps
    n = args.assets
    results: dict = {
        "assets": n,
        "rate": args.rate,
        "window_length": length,
        "bundle": str(args.bundle),
    }
    ctx = mp.get_context("fork")
    with tempfile.TemporaryDirectory(prefix="bench-agent-") as tmp:
        folder = Path(tmp)
        broker = Broker(folder / "broker").start()
        metrics = free_port()
        config = write_config(
            folder,
            {
                "site": SITE,
                "agent_id": "bench",
                "models": [{"bundle": str(args.bundle.resolve()), "alarm": {"k": 3, "n": 5}}],
                "inputs": [{"type": "mqtt", "topic": "plant/{site}/{asset}/telemetry"}],
                "mqtt": {
                    "host": "127.0.0.1",
                    "port": broker.port,
                    "inflight": 500,
                    "reconnect": {"min_delay": 0.5, "max_delay": 2},
                },
                "metrics": {"port": metrics},
                "store": {"outbox_max_bytes": "1GB"},
                "processing": {"batch": 1000},  # the default queue bound (10000 rows)
            },
        )
        agent = AgentProcess(config)
        t0_steady = ctx.Value("d", 0.0)
        ready, stop, out = ctx.Event(), ctx.Event(), ctx.Queue()
        consumer = ctx.Process(
            target=consume,
            args=(
                broker.port,
                ready,
                stop,
                out,
                n,
                first,
                args.rate,
                rows_period(bundle),
                t0_steady,
            ),
        )
        consumer.start()
        ready.wait(30)
        try:
            agent.wait_ready(metrics)
            pid = agent.process.pid
            cpu0, rss0 = proc_stats(pid)
            # 1. fill
            prod_out = ctx.Queue()
            start = time.time()
            producer = ctx.Process(
                target=produce,
                args=(broker.port, args.bundle, n, steps, 0, first, args.rate, 0.0, 0, prod_out),
            )
            producer.start()

            def filled():
                text = agent.metrics(metrics)
                done = metric_value(text, "plantml_agent_rows_received_total") >= n * first
                return done and metric_value(text, "plantml_agent_queue_depth") == 0

            wait_for(filled, 3600, "the agent to take the fill rows", every=0.2)
            fill_s = time.time() - start
            producer.join()
            cpu1, rss1 = proc_stats(pid)
            results["fill"] = {
                "rows": n * first,
                "load_average": os.getloadavg()[0],
                "seconds": fill_s,
                "rows_per_s": n * first / fill_s,
                "agent_cpu_s_per_row": (cpu1 - cpu0) / (n * first),
                "producer": prod_out.get(timeout=10),
                "rss_before_mb": rss0 / 2**20,
                "rss_after_mb": rss1 / 2**20,
            }
            print(
                f"fill: {results['fill']['rows_per_s']:.0f} rows/s, {results['fill']['agent_cpu_s_per_row'] * 1e6:.0f} us CPU/row",
                flush=True,
            )
            # 2. steady (+ outage)
            t0 = time.time() + 1.0
            t0_steady.value = t0
            producer = ctx.Process(
                target=produce,
                args=(broker.port, args.bundle, n, steps, first, steps, args.rate, t0, 0, prod_out),
            )
            producer.start()
            samples = []
            outage_done = args.outage <= 0
            while producer.is_alive():
                now = time.time() - t0
                if not outage_done and now >= args.outage_at:
                    broker.stop()
                    time.sleep(args.outage)
                    broker.start()
                    outage_done = True
                    results["outage"] = {"at_s": args.outage_at, "seconds": args.outage}
                depth = metric_value(agent.metrics(metrics), "plantml_agent_queue_depth")
                samples.append((time.time(), *proc_stats(pid), os.getloadavg()[0], depth))
                time.sleep(1.0)
            producer.join()
            steady_end = time.time()
            expected = n * steady_steps
            got = lambda: metric_value(agent.metrics(metrics), "plantml_agent_predictions_total")  # noqa: E731
            wait_for(lambda: got() >= expected, 600, "every prediction", every=0.5)
            wait_for(
                lambda: metric_value(agent.metrics(metrics), "plantml_agent_outbox_messages") == 0,
                600,
                "an empty outbox",
                every=0.5,
            )
            time.sleep(2)
            cpu2, rss2 = proc_stats(pid)
            steady_rows = (
                metric_value(agent.metrics(metrics), "plantml_agent_rows_received_total")
                - n * first
            )
            text = agent.metrics(metrics)
            window = [s for s in samples if s[0] >= t0 + 10] or samples
            share = (window[-1][1] - window[0][1]) / max(window[-1][0] - window[0][0], 1e-9)
            results["agent_cpu_s_per_row_all"] = (cpu2 - cpu0) / (n * first + steady_rows)
            results["steady"] = {
                "seconds": steady_end - t0,
                "agent_cpu_s_per_row": (cpu2 - cpu1) / steady_rows,
                "load_average": float(np.mean([s[3] for s in samples])),
                "rows": expected,
                "offered_rows_per_s": n * args.rate,
                "agent_cpu_share": share,
                "rss_start_mb": rss1 / 2**20,
                "rss_end_mb": rss2 / 2**20,
                "rss_growth": rss2 / rss1 - 1,
                "producer": prod_out.get(timeout=10),
                "rejected_by_reason": {
                    r: metric_value(text, "plantml_agent_rows_rejected_total", reason=r)
                    for r in ("redelivered", "duplicate", "time_order", "bad_value")
                },
                "max_queue_depth": max(x[4] for x in samples),
                "rss_at_60s_mb": next((x[2] for x in samples if x[0] >= t0 + 60), rss1) / 2**20,
                "predictions": metric_value(text, "plantml_agent_predictions_total"),
            }
        finally:
            stop.set()
            results["consumer"] = out.get(timeout=120)  # before join: the queue must be drained
            consumer.join(60)
            agent.stop()
            broker.stop()
        results["e2e"] = latency(results["consumer"], args.outage_at if args.outage > 0 else None)
        results["zero_loss"] = (
            results["consumer"]["unique"] == n * steady_steps and results["consumer"]["in_order"]
        )
        rows = Rows(bundle, n, steps)
        edge_steps = steps if args.edge_steps is None else min(args.edge_steps, steps)
        if edge_steps:  # the same rows (the first edge_steps of each asset)
            results["edge_stream"] = edge_stream(args.bundle, rows, n, edge_steps, folder)
    fill, steady, cons = results["fill"], results["steady"], results["consumer"]
    e2e = results["e2e"].get("before_outage") or results["e2e"]["all"]
    results["largest_fleet_per_core_at_1_row_s"] = {
        "from_steady_cpu_per_row": 1.0 / steady["agent_cpu_s_per_row"],
        "from_fill_cpu_per_row": 1.0 / fill["agent_cpu_s_per_row"],
        "fill_rows_per_s_on_this_machine": fill["rows_per_s"],
    }
    compare = ""
    if "edge_stream" in results:
        edge = results["edge_stream"]
        ratio = results["agent_cpu_s_per_row_all"] / edge["cpu_s_per_row"]
        results["agent_overhead_vs_edge_stream_cpu"] = ratio
        compare = (
            f"; edge stream {edge['rows_per_s']:.0f} rows/s ({edge['cpu_s_per_row'] * 1e6:.0f} us "
            f"CPU/row), agent {results['agent_cpu_s_per_row_all'] * 1e6:.0f} us CPU/row ({ratio:.2f}x)"
        )
    print(json.dumps(results, indent=2))
    rss_60 = steady["rss_at_60s_mb"]
    print(
        f"\n{n} assets x {args.rate:g} row/s (load average {steady['load_average']:.1f}): fill "
        f"{fill['rows_per_s']:.0f} rows/s; steady CPU share {steady['agent_cpu_share']:.2f}, "
        f"{steady['agent_cpu_s_per_row'] * 1e6:.0f} us CPU/row (one core: "
        f"{1 / steady['agent_cpu_s_per_row']:.0f} assets at 1 row/s); e2e p50 "
        f"{e2e['p50_s'] * 1e3:.0f} ms, p99 {e2e['p99_s'] * 1e3:.0f} ms (before the outage); RSS "
        f"{steady['rss_start_mb']:.0f} (after the fill) -> {rss_60:.0f} (60 s) -> "
        f"{steady['rss_end_mb']:.0f} MB ({(steady['rss_end_mb'] / rss_60 - 1) * 100:+.1f} % after "
        f"60 s); max queue {steady['max_queue_depth']:.0f}; unique {cons['unique']}/"
        f"{n * steady_steps}, duplicates {cons['duplicates']}, in order {cons['in_order']}{compare}"
    )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


def rows_period(bundle) -> float:
    return float(bundle.input["sampling_period"] or 1.0)


if __name__ == "__main__":
    main()
