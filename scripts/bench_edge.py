"""Edge runtime benchmark: import time, memory, torch-freeness, throughput and latency.

Measures, for one bundle (``--bundle DIR``; default a synthetic one: an ONNX
LSTM with 32 hidden units over windows of 30 rows x 14 sensors, built here in
a temporary folder):

- ``import plantml.edge``: wall time in a fresh interpreter, median of 5;
- peak RSS of a fresh interpreter after loading the bundle, and after
  predicting every window of the benchmark table (read from CSV);
- that neither torch nor pandas was imported in that interpreter;
- batch throughput of ``EdgeModel.predict_rows`` on CSV-like string columns
  (parsing, checks, conditions, normalization, windows and ONNX), rows/s;
- single-window latency of ``EdgeModel.predict_windows`` and per-row latency
  of ``StreamingPredictor.feed`` when a window is due, p50 / p99.

With ``--per-window`` it instead compares, side by side on the synthetic LSTM, the ways
to score an INT8 (dynamically quantized) model so that a window's prediction does
not depend on the other windows of its batch: batched calls (the old behaviour,
batch-dependent), one ONNX call per window (what plantml's runtime does for such
bundles) and the graph wrapped in a Loop over windows (the measured alternative),
with the float model as the reference: batch throughput of ``predict_rows``, the
largest difference from batch size 1, and single-window latency.

Reproduce (the numbers in the edge README section, 2-core CPU):

    .venv/bin/python scripts/bench_edge.py --rows 100000 --assets 20 --threads 1
    .venv/bin/python scripts/bench_edge.py --per-window --rows 40000 --assets 20 --repeats 5
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from plantml.edge import EdgeModel, StreamingPredictor, load_bundle
from plantml.edge.bundle import write_manifest
from plantml.edge.io import write_csv
from plantml.threads import limit_threads

LENGTH, CHANNELS, HIDDEN = 30, 14, 32


def synthetic_bundle(folder: Path) -> Path:
    """A bundle whose model is an ONNX LSTM + linear head + sigmoid (failure probability)."""
    from onnx import TensorProto, helper, numpy_helper, save

    rng = np.random.default_rng(0)

    def init(name: str, *shape: int, dtype=np.float32) -> object:
        return numpy_helper.from_array(rng.normal(0, 0.2, shape).astype(dtype), name)

    nodes = [
        helper.make_node("Transpose", ["window"], ["tbc"], perm=[1, 0, 2]),
        helper.make_node("LSTM", ["tbc", "W", "R", "B"], ["", "h"], hidden_size=HIDDEN),
        helper.make_node("Squeeze", ["h", "axis0"], ["last"]),
        helper.make_node("MatMul", ["last", "head"], ["logit"]),
        helper.make_node("Sigmoid", ["logit"], ["prediction"]),
    ]
    graph = helper.make_graph(
        nodes,
        "bench_lstm",
        [helper.make_tensor_value_info("window", TensorProto.FLOAT, ["batch", LENGTH, CHANNELS])],
        [helper.make_tensor_value_info("prediction", TensorProto.FLOAT, ["batch", 1])],
        initializer=[
            init("W", 1, 4 * HIDDEN, CHANNELS),
            init("R", 1, 4 * HIDDEN, HIDDEN),
            init("B", 1, 8 * HIDDEN),
            init("head", HIDDEN, 1),
            numpy_helper.from_array(np.array([0], np.int64), "axis0"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    folder.mkdir(parents=True, exist_ok=True)
    save(model, str(folder / "model.onnx"))
    features = [f"sensor_{i}" for i in range(CHANNELS)]
    manifest = {
        "format": "plantml-edge-bundle",
        "format_version": 1,
        "name": "bench-lstm",
        "version": "0",
        "created": "2024-01-01T00:00:00Z",
        "plantml_version": "0.1.0",
        "model": {"file": "model.onnx", "input": "window", "output": "prediction", "opset": 17},
        "input": {
            "asset_column": "unit",
            "time_column": "cycle",
            "time_kind": "number",
            "sampling_period": 1.0,
            "max_gap": 1.5,
            "feature_columns": features,
            "dtypes": dict.fromkeys(features, "float32"),
            "window_length": LENGTH,
            "stride": 1,
        },
        "normalization": {
            "method": "standard",
            "per_condition": False,
            "offset": [[0.0] * CHANNELS] * 2,
            "scale": [[1.0] * CHANNELS] * 2,
        },
        "conditions": {"mode": "single", "column": None, "settings": None, "names": ["all"]}
        | {"categories": [], "center": None, "scale": None, "centroids": None},
        "task": {"kind": "failure", "output_name": "failure_probability", "threshold": 0.5}
        | {"alarm_when": "above", "description": "synthetic", "unit": None},
        "lineage": {},
        "metrics": {},
    }
    write_manifest(folder, manifest)
    return folder


def synthetic_rows(bundle_dir: Path, n_rows: int, n_assets: int) -> dict[str, list[str]]:
    """CSV-like string columns for the bundle's inputs, assets interleaved row by row."""
    b = load_bundle(bundle_dir)
    rng = np.random.default_rng(1)
    per = n_rows // n_assets
    step = b.input["sampling_period"] or 1.0
    ticks = np.repeat(np.arange(per), n_assets)
    cols: dict[str, list[str]] = {b.asset_column: [f"a{i}" for i in range(n_assets)] * per}
    if b.input["time_kind"] == "datetime":
        t0 = np.datetime64("2024-01-01T00:00:00")
        stamps = t0 + (ticks * step * 1e6).astype("timedelta64[us]")
        cols[b.time_column] = stamps.astype(str).tolist()
    else:
        cols[b.time_column] = (ticks * step).astype(str).tolist()
    glob_off, glob_scale = b.offset[-1], b.scale[-1]
    for j, c in enumerate(b.feature_columns):
        cols[c] = (glob_off[j] + glob_scale[j] * rng.normal(size=len(ticks))).astype(str).tolist()
    cond = b.conditions
    if cond["mode"] == "column":
        cats = cond["categories"]
        cols[cond["column"]] = [cats[i] for i in rng.integers(len(cats), size=len(ticks))]
    elif cond["mode"] == "cluster":
        for j, c in enumerate(cond["settings"]):
            if c not in cols:
                centre, sc = cond["center"][j], cond["scale"][j]
                cols[c] = (centre + sc * rng.normal(size=len(ticks))).astype(str).tolist()
    return cols


def import_time(repeats: int = 5) -> float:
    code = (
        "import time; t = time.perf_counter(); import plantml.edge; print(time.perf_counter() - t)"
    )
    runs = []
    for _ in range(repeats):
        cmd = [sys.executable, "-c", code]
        runs.append(float(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout))
    return statistics.median(runs)


# Peak RSS from /proc (VmHWM): ru_maxrss would carry over the parent's peak across fork + exec.
MEMORY_PROBE = """
import json, resource, sys
def peak_kb():
    try:
        for line in open("/proc/self/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
from plantml.edge import EdgeModel
from plantml.edge.io import read_csv
model = EdgeModel(sys.argv[1], threads=int(sys.argv[3]))
loaded = peak_kb()
out, errors = model.predict_rows(read_csv(sys.argv[2]))
peak = peak_kb()
heavy = [m for m in ("torch", "pandas", "lightning", "hydra", "scipy") if m in sys.modules]
print(json.dumps({"loaded_mb": loaded / 1024, "peak_mb": peak / 1024, "heavy": heavy,
                  "predictions": len(out[model.bundle.output_name])}))
"""


def memory(bundle_dir: Path, csv_path: Path, threads: int) -> dict:
    proc = subprocess.run(
        [sys.executable, "-c", MEMORY_PROBE, str(bundle_dir), str(csv_path), str(threads)],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(proc.stdout)


def percentiles(seconds: list[float]) -> tuple[float, float]:
    us = np.asarray(seconds) * 1e6
    return float(np.percentile(us, 50)), float(np.percentile(us, 99))


def wrap_per_window(src: Path, dst: Path) -> None:
    """The alternative measured by ``--per-window``: ``src`` as a Loop over windows at ``dst``.

    The original graph runs once per window inside an ONNX ``Loop`` over the batch
    dimension, so each window gets its own dynamic scales (one input (batch, ...),
    one output whose first dimension is the batch).
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    model = onnx.load(str(src))
    graph = model.graph
    constant = {init.name for init in graph.initializer}
    inputs = [i for i in graph.input if i.name not in constant]
    if len(inputs) != 1 or len(graph.output) != 1:
        raise ValueError(f"{src}: per-window wrapping needs one input and one output")
    window, prediction = inputs[0].name, graph.output[0].name
    rename = {window: "per_window_window_i", prediction: "per_window_prediction_i"}
    body_nodes = []
    for node in graph.node:
        copy = onnx.NodeProto()
        copy.CopyFrom(node)
        copy.input[:] = [rename.get(name, name) for name in node.input]
        copy.output[:] = [rename.get(name, name) for name in node.output]
        body_nodes.append(copy)
    p = "per_window_"
    # body: slice window i (keeping the batch axis of 1), run the original graph on it
    body = helper.make_graph(
        [
            helper.make_node("Unsqueeze", [p + "i", p + "axis0"], [p + "start"]),
            helper.make_node("Add", [p + "start", p + "one"], [p + "end"]),
            helper.make_node(
                "Slice", [window, p + "start", p + "end", p + "axis0"], [rename[window]]
            ),
            helper.make_node("Identity", [p + "cond_in"], [p + "cond_out"]),
            *body_nodes,
        ],
        "per_window_body",
        [
            helper.make_tensor_value_info(p + "i", TensorProto.INT64, []),
            helper.make_tensor_value_info(p + "cond_in", TensorProto.BOOL, []),
        ],
        [
            helper.make_tensor_value_info(p + "cond_out", TensorProto.BOOL, []),
            helper.make_tensor_value_info(
                rename[prediction], graph.output[0].type.tensor_type.elem_type, None
            ),
        ],
    )
    constants = [
        numpy_helper.from_array(np.array([0], np.int64), p + "axis0"),
        numpy_helper.from_array(np.array([1], np.int64), p + "axis1"),
        numpy_helper.from_array(np.array([1], np.int64), p + "one"),
        numpy_helper.from_array(np.array(0, np.int64), p + "zero"),
        numpy_helper.from_array(np.array(True), p + "true"),
    ]
    outer = helper.make_graph(
        [
            helper.make_node("Shape", [window], [p + "shape"]),
            helper.make_node("Gather", [p + "shape", p + "zero"], [p + "n"], axis=0),
            helper.make_node("Loop", [p + "n", p + "true"], [p + "stacked"], body=body),
            # stacked is (batch, 1, ...): each window's output kept its batch axis of 1
            helper.make_node("Squeeze", [p + "stacked", p + "axis1"], [prediction]),
        ],
        graph.name,
        list(graph.input),
        list(graph.output),
        initializer=[*graph.initializer, *constants],
    )
    wrapped = helper.make_model(outer, opset_imports=list(model.opset_import))
    wrapped.ir_version = model.ir_version
    onnx.checker.check_model(wrapped)
    onnx.save(wrapped, str(dst))


def per_window_bundles(root: Path) -> dict[str, Path]:
    """The synthetic float LSTM and three INT8 variants of it (see the module doc)."""
    import shutil

    from plantml.export.quantize import quantize

    fp32 = synthetic_bundle(root / "fp32")
    variants = {"float32, batched": (fp32, None)}
    for name, mode in (
        ("INT8, batched (batch-dependent)", None),
        ("INT8, one call per window", "call"),
        ("INT8, Loop over windows in the graph", "loop"),
    ):
        folder = root / mode if mode else root / "int8_batched"
        shutil.copytree(fp32, folder)
        quantize(fp32 / "model.onnx", folder / "model.onnx", "dynamic")  # what plantml-export does
        if mode == "loop":
            wrap_per_window(folder / "model.onnx", folder / "model.onnx")
        variants[name] = (folder, mode)
    out = {}
    for name, (folder, mode) in variants.items():
        manifest = json.loads((folder / "manifest.json").read_text())
        manifest["model"]["per_window"] = mode == "call"  # the runtime's one-call-per-window
        for key in ("files", "manifest_sha256"):
            manifest.pop(key, None)
        write_manifest(folder, manifest)
        out[name] = folder
    return out


def per_window(args: argparse.Namespace) -> None:
    """Side-by-side throughput, batch dependence and latency of the INT8 scoring options.

    The variants take turns in each repeat (round robin), so a busy machine slows all alike.
    """
    with tempfile.TemporaryDirectory() as tmp:
        bundles = per_window_bundles(Path(tmp))
        cols = synthetic_rows(next(iter(bundles.values())), args.rows, args.assets)
        models = {name: EdgeModel(folder, threads=args.threads) for name, folder in bundles.items()}
        key = next(iter(models.values())).bundle.output_name
        times: dict[str, list[float]] = {name: [] for name in models}
        lat: dict[str, list[float]] = {name: [] for name in models}
        first = next(iter(models.values()))
        window = first.windows_for_rows({k: v[:2000] for k, v in cols.items()}).gather([0])
        for model in models.values():
            model.predict_rows({k: v[:2000] for k, v in cols.items()})  # warm-up
        for _ in range(args.repeats):
            for name, model in models.items():
                t = time.perf_counter()
                model.predict_rows(cols, batch_size=args.batch_size)
                times[name].append(time.perf_counter() - t)
                for _ in range(args.latency_iters // args.repeats):
                    t = time.perf_counter()
                    model.predict_windows(window)
                    lat[name].append(time.perf_counter() - t)
        rows = []
        for name, model in models.items():
            out = model.predict_rows(cols, batch_size=args.batch_size)[0][key]
            one = model.predict_rows(cols, batch_size=1)[0][key]
            rate = len(out) / statistics.median(times[name])
            rows.append((name, rate, float(np.abs(out - one).max()), percentiles(lat[name])[0]))
    base = rows[0][1]
    print(
        "| scoring | windows/s (predict_rows, median) | vs float batched "
        "| max diff from batch size 1 | one window p50 |"
    )
    print("|---|---:|---:|---:|---:|")
    for name, rate, diff, p50 in rows:
        print(f"| {name} | {rate:,.0f} | {rate / base:.2f} | {diff:.1e} | {p50:.0f} µs |")
    print(
        f"\n{args.rows} rows, {args.assets} assets, batch {args.batch_size}, "
        f"{args.threads} thread(s), median of {args.repeats} round-robin repeats"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bundle", type=Path, help="bundle folder (default: a synthetic LSTM)")
    parser.add_argument("--rows", type=int, default=100_000, help="rows in the batch table")
    parser.add_argument("--assets", type=int, default=20, help="assets in the batch table")
    parser.add_argument(
        "--threads", type=int, default=1, help="onnxruntime intra-op threads, and the OpenMP limit"
    )
    parser.add_argument("--batch-size", type=int, default=1024, help="windows per ONNX call")
    parser.add_argument("--latency-iters", type=int, default=2000, help="single-window calls")
    parser.add_argument(
        "--per-window",
        action="store_true",
        help="compare the INT8 scoring options (batched, per call, Loop) instead",
    )
    parser.add_argument("--repeats", type=int, default=3, help="--per-window: timed runs each")
    args = parser.parse_args(argv)
    limit_threads(args.threads)
    if args.per_window:
        per_window(args)
        return

    with tempfile.TemporaryDirectory() as tmp:
        bundle_dir = args.bundle or synthetic_bundle(Path(tmp) / "bundle")
        cols = synthetic_rows(bundle_dir, args.rows, args.assets)
        csv_path = Path(tmp) / "rows.csv"
        write_csv(csv_path, cols)
        n_rows = len(next(iter(cols.values())))

        imp = import_time()
        mem = memory(bundle_dir, csv_path, args.threads)
        model = EdgeModel(bundle_dir, threads=args.threads)
        model.predict_rows({k: v[:2000] for k, v in cols.items()})  # warm-up
        t = time.perf_counter()
        out, errors = model.predict_rows(cols, batch_size=args.batch_size)
        batch_s = time.perf_counter() - t
        n_windows = len(out[model.bundle.output_name])

        windows = model.windows_for_rows({k: v[:5000] for k, v in cols.items()})
        x = windows.gather(np.arange(min(len(windows), 256)))
        lat = []
        for i in range(args.latency_iters):
            one = x[i % len(x)][None]
            t = time.perf_counter()
            model.predict_windows(one)
            lat.append(time.perf_counter() - t)
        p50, p99 = percentiles(lat)

        stream = StreamingPredictor(model)
        names = list(cols)
        due = []
        for i in range(min(n_rows, args.latency_iters * 2)):
            row = {c: cols[c][i] for c in names}
            t = time.perf_counter()
            pred = stream.feed(row)
            if pred is not None:
                due.append(time.perf_counter() - t)
        s50, s99 = percentiles(due)

    name = load_bundle(bundle_dir).name if args.bundle else "synthetic LSTM (30 x 14, h=32)"
    table = [
        ("bundle", name),
        ("`import plantml.edge` (fresh process, median of 5)", f"{imp * 1000:.0f} ms"),
        ("peak RSS after loading the bundle", f"{mem['loaded_mb']:.0f} MB"),
        (f"peak RSS after predicting {n_rows} CSV rows", f"{mem['peak_mb']:.0f} MB"),
        ("torch / pandas imported", "no" if not mem["heavy"] else ", ".join(mem["heavy"])),
        (
            f"batch `predict_rows` ({n_rows} rows, {args.assets} assets, {n_windows} windows)",
            f"{n_rows / batch_s:,.0f} rows/s ({n_windows / batch_s:,.0f} windows/s)",
        ),
        ("single window `predict_windows` p50 / p99", f"{p50:.0f} / {p99:.0f} µs"),
        ("streaming `feed` (window due) p50 / p99", f"{s50:.0f} / {s99:.0f} µs"),
        ("onnxruntime threads", str(args.threads)),
    ]
    print("| metric | value |\n|---|---|")
    for k, v in table:
        print(f"| {k} | {v} |")
    if errors:
        print(f"\n({len(errors)} rows rejected; first: {errors[0]})")


if __name__ == "__main__":
    main()
