"""plantml-edge: run an exported bundle on a device (numpy + onnxruntime, no torch).

    plantml-edge predict --bundle DIR --input FILE.csv|.parquet --output FILE.csv
                         [--errors FILE.csv] [--threads 1] [--batch-size 1024] [--strict]
    plantml-edge stream  --bundle DIR --input FILE      # one prediction per line as rows arrive
    plantml-edge verify  --bundle DIR [--trusted-keys KEYS]  # every file's SHA-256 (+ signature)
    plantml-edge info    --bundle DIR                   # what the bundle needs and predicts

Exit status: 0 ok; 1 with ``--strict`` when a row was rejected; 2 when the
bundle or the input cannot be used (one ``error:`` line on stderr).
"""

from __future__ import annotations

import argparse
import csv
import sys
from collections.abc import Sequence

from plantml.edge import BundleError, EdgeModel, InputError, RowError, StreamingPredictor
from plantml.edge.io import format_row, iter_rows, read_table, write_csv

SHOW_ERRORS = 10


def _report_rejected(errors: Sequence[RowError], errors_file: str | None) -> None:
    for err in errors[:SHOW_ERRORS]:
        print(f"rejected {err}", file=sys.stderr)
    if len(errors) > SHOW_ERRORS:
        more = f"; all are in {errors_file}" if errors_file else "; --errors FILE lists them all"
        print(f"... and {len(errors) - SHOW_ERRORS} more rejected rows{more}", file=sys.stderr)


def _predict(args: argparse.Namespace) -> int:
    model = EdgeModel(args.bundle, threads=args.threads)
    columns = read_table(args.input)
    out, errors = model.predict_rows(columns, batch_size=args.batch_size)
    n_rows = max((len(v) for v in columns.values()), default=0)
    written = write_csv(args.output, out)
    if args.errors:
        write_csv(
            args.errors,
            {
                key: [e.as_dict()[key] for e in errors]
                for key in ("row", "asset", "column", "message")
            },
        )
    alarms = f"{int(out['alarm'].sum())} alarms" if "alarm" in out else "no alarm threshold"
    summary = (
        f"{n_rows} rows read, {len(errors)} rejected, {written} predictions written to "
        f"{args.output}, {alarms}"
    )
    print(summary, file=sys.stderr if args.output == "-" else sys.stdout)
    _report_rejected(errors, args.errors)
    return 1 if args.strict and errors else 0


def _stream(args: argparse.Namespace) -> int:
    stream = StreamingPredictor(EdgeModel(args.bundle, threads=args.threads))
    bundle = stream.model.bundle
    header = ["asset", "time", "condition", bundle.output_name]
    interval = bundle.interval is not None
    if interval:
        header += [f"{bundle.output_name}_low", f"{bundle.output_name}_high"]
    has_alarm = bundle.threshold is not None or (
        interval and bundle.interval.get("alarm_lead_time") is not None
    )
    learns = stream.asset_threshold is not None  # each asset's own threshold
    if learns:
        header.append("threshold")
    if has_alarm or learns:
        header.append("alarm")
    writer = csv.writer(sys.stdout, lineterminator="\n")
    writer.writerow(header)
    n_rows = n_pred = 0
    errors: list[RowError] = []
    for row in iter_rows(args.input):
        n_rows += 1
        try:
            p = stream.feed(row)
        except RowError as err:
            errors.append(err)
            print(f"rejected {err}", file=sys.stderr, flush=True)
            continue
        if p is not None:
            n_pred += 1
            values = [p.asset, p.time, p.condition, p.value]
            if interval:
                values += [p.low, p.high]
            if learns:
                values.append("" if p.threshold is None else p.threshold)  # calibrating
            writer.writerow(format_row(values + ([] if p.alarm is None else [int(p.alarm)])))
            sys.stdout.flush()
    print(f"{n_rows} rows streamed, {len(errors)} rejected, {n_pred} predictions", file=sys.stderr)
    return 1 if args.strict and errors else 0


def _inputs_line(model: EdgeModel) -> str:
    return ", ".join(model.bundle.required_columns)


def _verify(args: argparse.Namespace) -> int:
    signed = []
    if args.trusted_keys:
        from plantml.edge.signature import load_trusted_keys, verify_signed_bundle

        _, signed = verify_signed_bundle(args.bundle, load_trusted_keys(args.trusted_keys))
    model = EdgeModel(args.bundle, threads=1)  # hashes checked, and onnxruntime loads the model
    b, task = model.bundle, model.bundle.task
    print(f"ok: bundle {b.name} version {b.version}: {len(b.manifest['files'])} file(s) verified")
    for payload in signed:
        print(
            f"signed: registered as {payload.get('model')} version {payload.get('version')} "
            f"(signature verified with a trusted key)"
        )
    unit = f" ({task['unit']})" if task.get("unit") else ""
    print(f"task: {task['kind']} -> {b.output_name}{unit}")
    print(f"inputs: {_inputs_line(model)}")
    return 0


def _headline(metrics: object, limit: int = 6) -> str:
    if not isinstance(metrics, dict):
        return "none"
    split = metrics.get("split")
    if isinstance(metrics.get("overall"), dict):  # plantml-export: {"split", "overall", ...}
        metrics = {f"{split or 'overall'}/{k}": v for k, v in metrics["overall"].items()}
    items = [(k, v) for k, v in metrics.items() if isinstance(v, int | float)]
    items = sorted(items, key=lambda kv: not str(kv[0]).startswith("test/"))[:limit]
    return ", ".join(f"{k}={v:.4g}" for k, v in items) or "none"


def _info(args: argparse.Namespace) -> int:
    model = EdgeModel(args.bundle, threads=1)
    b = model.bundle
    m, inp, cond, task = b.manifest, b.input, b.conditions, b.task
    mod = m["model"]
    print(f"bundle:      {b.name} version {b.version} (created {m.get('created', '?')})")
    print(
        f"model:       {mod['file']} opset {mod.get('opset', '?')}, exporter "
        f"{mod.get('exporter', '?')}, variant {mod.get('variant', '?')}"
    )
    print(f"inputs:      {_inputs_line(model)}")
    print(f"  asset:     {b.asset_column}; time: {b.time_column} ({inp['time_kind']})")
    print(f"  features:  {', '.join(b.feature_columns)}")
    unit = " s" if inp["time_kind"] == "datetime" else ""

    def span(value: float | None) -> str:
        return "not set" if value is None else f"{value:g}{unit}"

    print(
        f"window:      {b.window_length} rows, stride {b.stride}, sampling period "
        f"{span(inp['sampling_period'])}, max gap {span(inp['max_gap'])}"
    )
    source = {"column": f" from column {cond.get('column')!r}", "cluster": " from settings "}
    where = source.get(cond["mode"], "")
    if cond["mode"] == "cluster":
        where += ", ".join(cond["settings"])
    print(f"conditions:  {cond['mode']}{where}: {'; '.join(cond['names'])}")
    norm = m["normalization"]
    per = "per condition" if norm["per_condition"] else "global"
    print(f"scaling:     {norm['method']} ({per})")
    unit = f" ({task['unit']})" if task.get("unit") else ""
    about = f": {task['description']}" if task.get("description") else ""
    print(f"task:        {task['kind']} -> {b.output_name}{unit}{about}")
    spec = b.interval
    if spec is not None:
        per = "per condition" if spec["by"] == "condition" else "one for all conditions"
        print(
            f"interval:    {100 * spec['level']:g} % conformal ({per}): {b.output_name}_low, "
            f"{b.output_name}_high; half-widths {', '.join(f'{w:.3g}' for w in spec['half_width'])}"
        )
    if (task.get("calibration") or {}).get("folded_into_graph"):
        cal = task["calibration"]
        print(
            f"calibrated:  {cal['method']} scaling inside the graph (a={cal['a']:.4g}, "
            f"b={cal['b']:.4g})"
        )
    learn = task.get("asset_threshold")
    if learn:
        print(
            f"per asset:   each asset learns its threshold on its first {learn['windows']} "
            f"windows: {learn['margin']:g} x their {learn['quantile']:g} quantile (no alarms before)"
        )
    lead = (spec or {}).get("alarm_lead_time")
    if b.threshold is None and lead is not None:
        print(f"alarm:       {b.output_name}_low <= {lead:g}")
    elif b.threshold is None:
        print("alarm:       none (no threshold)")
    else:
        print(
            f"alarm:       {b.output_name} {'<=' if b.alarm_when == 'below' else '>='} "
            f"{b.threshold:g}"
        )
    print(f"metrics:     {_headline(m.get('metrics'))}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="plantml-edge",
        description="Run an exported plantml bundle (numpy + onnxruntime, no torch).",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    def command(name: str, help_text: str, func) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.add_argument("--bundle", required=True, help="bundle folder (model.onnx, manifest.json)")
        p.set_defaults(func=func)
        return p

    p = command("predict", "predict every window of a CSV or Parquet file", _predict)
    p.add_argument("--input", required=True, help="rows to score (.csv or .parquet)")
    p.add_argument("--output", required=True, help="predictions CSV ('-' for stdout)")
    p.add_argument("--errors", help="write rejected rows (row, asset, column, message) to this CSV")
    p.add_argument("--threads", type=int, default=1, help="onnxruntime threads (default 1)")
    p.add_argument("--batch-size", type=int, default=1024, help="windows per model call")
    p.add_argument("--strict", action="store_true", help="exit 1 when any row is rejected")
    p = command("stream", "feed rows one at a time and print predictions as they arrive", _stream)
    p.add_argument("--input", required=True, help="rows in arrival order (.csv or .parquet)")
    p.add_argument("--threads", type=int, default=1, help="onnxruntime threads (default 1)")
    p.add_argument("--strict", action="store_true", help="exit 1 when any row is rejected")
    p = command("verify", "check the bundle's files against their SHA-256 hashes", _verify)
    p.add_argument(
        "--trusted-keys",
        nargs="+",
        help="public key files (or folders of *.pub): also require a valid registry signature",
    )
    command("info", "show what the bundle needs and predicts", _info)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (BundleError, InputError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
