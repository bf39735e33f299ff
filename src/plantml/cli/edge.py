"""plantml-edge: run an exported bundle on a device (numpy + onnxruntime, no torch).

    plantml-edge predict --bundle DIR --input FILE.csv|.parquet --output FILE.csv
                         [--errors FILE.csv] [--threads 1] [--batch-size 1024] [--strict]
    plantml-edge stream  --bundle DIR --input FILE      # one prediction per line as rows arrive
    plantml-edge verify  --bundle DIR [--trusted-keys KEYS] [--strict]  # SHA-256s (+ signature)
    plantml-edge info    --bundle DIR                   # what the bundle needs and predicts

Exit status: 0 ok; 1 with ``--strict`` when a row was rejected (``verify``: when
the folder holds files the manifest does not list); 2 when the bundle or the input
cannot be used (one ``error:`` line on stderr).

Besides rejected rows, ``predict`` and ``stream`` report on stderr what else kept
rows from a normal prediction: window restarts after gaps (and the rows they left
without a prediction), values clamped into the training range, and operating-condition
values not seen in training (predicted with global scaling, labelled ``unseen``).
"""

from __future__ import annotations

import argparse
import csv
import sys
from collections.abc import Sequence
from pathlib import Path

from plantml.edge import BundleError, EdgeModel, InputError, RowError, StreamingPredictor
from plantml.edge.bundle import MANIFEST
from plantml.edge.io import format_row, iter_rows, read_header, read_table, write_csv
from plantml.edge.signature import SIGNATURE_FILE

SHOW_ERRORS = 10


def _report_rejected(errors: Sequence[RowError], errors_file: str | None) -> None:
    for err in errors[:SHOW_ERRORS]:
        print(f"rejected {err}", file=sys.stderr)
    if len(errors) > SHOW_ERRORS:
        more = f"; all are in {errors_file}" if errors_file else "; --errors FILE lists them all"
        print(f"... and {len(errors) - SHOW_ERRORS} more rejected rows{more}", file=sys.stderr)


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{k!r}: {n}" for k, n in sorted(counts.items(), key=lambda kv: -kv[1]))


def _notes(
    restarts: int, lost: int, clipped: dict[str, int], unseen: dict[str, int]
) -> tuple[list[str], list[str]]:
    """Summary parts and stderr lines for what kept rows from a normal prediction."""
    parts, lines = [], []
    if restarts:
        parts.append(f"{restarts} window restarts ({lost} rows without a prediction)")
        lines.append(
            f"{restarts} window restart(s) after gaps longer than the bundle's max_gap left "
            f"{lost} row(s) without a prediction until the window filled again"
        )
    if clipped:
        parts.append(f"{sum(clipped.values())} values clamped")
        lines.append(f"values clamped into the range training accepted: {_counts(clipped)}")
    if unseen:
        parts.append(f"{sum(unseen.values())} rows with an unseen condition")
        lines.append(
            f"operating condition(s) not seen in training: {_counts(unseen)} rows; predicted "
            "with the global scaling and labelled 'unseen' (retrain with such data to cover them)"
        )
    return parts, lines


def _predict(args: argparse.Namespace) -> int:
    model = EdgeModel(args.bundle, threads=args.threads)
    columns = read_table(args.input)
    # a bundle trained without asset ids: the whole file is one asset, named after it
    asset = Path(args.input).name.split(".")[0]
    result = model.predict_table(columns, batch_size=args.batch_size, asset=asset)
    out, errors, n_rows = result.columns, result.errors, result.rows
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
    parts, lines = _notes(result.restarts, result.rows_lost, result.clipped, result.unseen)
    summary = ", ".join(
        [
            f"{n_rows} rows read, {len(errors)} rejected, {written} predictions written to "
            f"{args.output}, {alarms}",
            *parts,
        ]
    )
    print(summary, file=sys.stderr if args.output == "-" else sys.stdout)
    for line in lines:
        print(line, file=sys.stderr)
    _report_rejected(errors, args.errors)
    return 1 if args.strict and errors else 0


def _stream(args: argparse.Namespace) -> int:
    stream = StreamingPredictor(
        EdgeModel(args.bundle, threads=args.threads), asset=Path(args.input).name.split(".")[0]
    )
    bundle = stream.model.bundle
    stream.model.preprocessor.check_columns(read_header(args.input))  # whole-input error: exit 2
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
    for row in iter_rows(args.input, rejects=True):
        n_rows += 1
        try:
            if isinstance(row, RowError):  # a line that cannot be a row: skip it alone
                raise row
            p = stream.feed(row, row_number=n_rows)
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
    reports = stream.report.values()
    clipped: dict[str, int] = {}
    unseen: dict[str, int] = {}
    for report in reports:
        for total, part in ((clipped, report.clipped), (unseen, report.unseen)):
            for key, n in part.items():
                total[key] = total.get(key, 0) + n
    restarts = sum(r.restarts for r in reports)
    parts, lines = _notes(restarts, sum(r.rows_lost for r in reports), clipped, unseen)
    summary = f"{n_rows} rows streamed, {len(errors)} rejected, {n_pred} predictions"
    print(", ".join([summary, *parts]), file=sys.stderr)
    for line in lines:
        print(line, file=sys.stderr)
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
    listed = set(b.manifest["files"]) | {
        MANIFEST,
        SIGNATURE_FILE,
    }  # the signature signs the manifest
    extra = sorted(
        p.relative_to(b.path).as_posix()
        for p in b.path.rglob("*")
        if p.is_file() and p.relative_to(b.path).as_posix() not in listed
    )
    if extra:
        shown = ", ".join(extra[:10]) + (f" and {len(extra) - 10} more" if len(extra) > 10 else "")
        print(
            f"warning: {len(extra)} file(s) in the bundle folder are not listed in {MANIFEST}, so "
            f"nothing vouches for them (the runtime does not read them): {shown}; remove them "
            "or re-export the bundle",
            file=sys.stderr,
        )
        return 1 if args.strict else 0
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
    asset = b.asset_column or "none (every input file or stream is one asset)"
    print(f"  asset:     {asset}; time: {b.time_column} ({inp['time_kind']})")
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
    accepted = b.valid_range
    if accepted:
        what = "rejected" if accepted["action"] == "nan" else "clamped"
        shown = ", ".join(
            f"{c} [{'-inf' if lo is None else f'{lo:.4g}'}, {'inf' if hi is None else f'{hi:.4g}'}]"
            for c, (lo, hi) in accepted["bounds"].items()
        )
        print(f"valid range: values outside are {what}: {shown}")
    else:
        print("valid range: none (any finite value is accepted)")
    calls = "one window per call (dynamic INT8)" if model.window_calls else "batches"
    print(f"model calls: {calls}")
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
    p.add_argument(
        "--strict", action="store_true", help="exit 1 when the folder holds unlisted files"
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
