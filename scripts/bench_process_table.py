"""Per-row process tables: gradient boosting against the LSTM path, then both as INT8 bundles.

Generates machining-cycle tables (``plantml.data.sources.machining``: one row per cycle, a
failure flag per row, AI4I-like failure modes; about 4 % of rows fail), one per seed, and
trains ``experiment=process_table`` (one-row windows, temporal split 60/20/20) with
``model=gbm`` (its default) and ``model=lstm``. Prints test F1, precision, recall, AUROC and
AUPRC (mean ± std over seeds, and the first seed's 95 % block-bootstrap intervals), then
exports the first seed's models with ``export=int8`` and runs the GBM bundle with
``plantml-edge``-s runtime on the whole table (parity with scikit-learn on the scored rows).

The measurement in the README:

    OMP_NUM_THREADS=1 .venv/bin/python scripts/bench_process_table.py --seeds 0 1 2 \
        --rows 10000 --out outputs/bench/process_table
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

MODELS = ("gbm", "lstm")
METRICS = ("f1", "precision", "recall", "auroc", "auprc")


def train(table: Path, model: str, seed: int, out: Path, bootstrap: int) -> dict:
    from plantml import api

    cfg = api.compose(
        [
            "experiment=process_table",
            f"data.path={table}",
            "data.condition_column=type",
            f"model={model}",
            f"seed={seed}",
            "logger=csv",
            "callbacks.progress_bar.refresh_rate=0",
            f"bootstrap={bootstrap}",
        ],
        output_dir=out,
    )
    start = time.perf_counter()
    metrics = api.train(cfg)
    metrics["seconds"] = time.perf_counter() - start
    return metrics


def export(run: Path, out: Path) -> dict:
    """INT8 bundle of a run: size, parameters and val F1 of torch fp32 and the bundle."""
    from plantml import api

    report = api.export(run, "int8", out, ["measure.repeats=50"])
    first, last = report["variants"][0], report["variants"][-1]
    return {
        "bundle": report["bundle"],
        "variant": last["name"],
        "bytes": last["bytes"],
        "parameters": last["parameters"],
        "val_f1_torch": first["metrics"]["overall"]["f1"],
        "val_f1_bundle": last["metrics"]["overall"]["f1"],
        "p50_ms": last["latency"]["p50_ms"],
    }


def edge_parity(bundle: str, table: Path, run: Path) -> dict:
    """The bundle on every row of the table against the run's scikit-learn predictions."""
    import numpy as np
    import pandas as pd

    from plantml.edge import EdgeModel
    from plantml.edge.io import read_table

    model = EdgeModel(bundle)
    rows = read_table(table)
    n = len(rows["type"])
    # data=table without asset and time columns: the file is the asset (its stem) and the row
    # order the time; a device sends a row counter as the time column
    rows[model.bundle.time_column] = [str(i) for i in range(n)]
    asset = table.stem
    if model.bundle.asset_column:
        rows[model.bundle.asset_column] = [asset] * n
    out, errors = model.predict_rows(rows, asset=asset)
    edge = pd.Series(out["failure_probability"], index=[int(float(t)) for t in out["time"]])
    diffs = []
    for split in ("val", "test"):
        pred = pd.read_csv(run / f"predictions_{split}.csv")
        index = pred["time"].to_numpy().astype(int)
        diffs.append(np.abs(edge.loc[index].to_numpy() - pred["prediction"].to_numpy()))
    diff = np.concatenate(diffs)
    return {"rows_scored": len(diff), "max_abs_diff": float(diff.max()), "rejected": len(errors)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--rows", type=int, default=10000, help="cycles per generated table")
    parser.add_argument("--bootstrap", type=int, default=500, help="block-bootstrap resamples")
    parser.add_argument("--out", default="outputs/bench/process_table")
    parser.add_argument("--no-export", action="store_true", help="skip the INT8 bundles")
    args = parser.parse_args(argv)
    from plantml.cli.common import quiet_libraries
    from plantml.data.sources.machining import machining_table

    quiet_libraries()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results: dict = {m: [] for m in MODELS}
    for seed in args.seeds:
        table = out / f"machining_seed{seed}.csv"
        frame = machining_table(args.rows, seed)
        frame.to_csv(table, index=False)
        for model in MODELS:
            m = train(table, model, seed, out / f"{model}_seed{seed}", args.bootstrap)
            results[model].append(
                {
                    "seed": seed,
                    "failure_rate": float(frame["failure"].mean()),
                    **{k: m.get(f"test/{k}") for k in METRICS},
                    "ci": m.get("intervals", {}).get("test", {}),
                    "parameters": m.get("model/parameters"),
                    "seconds": m["seconds"],
                }
            )
    summary = {}
    lines = [
        "| model | parameters | " + " | ".join(f"test {k}" for k in METRICS) + " | train s |",
        "| --- " * (len(METRICS) + 3) + "|",
    ]
    for model, rows in results.items():
        stats = {}
        for k in METRICS:
            values = [r[k] for r in rows if r[k] is not None]
            sd = statistics.stdev(values) if len(values) > 1 else 0.0
            stats[k] = (statistics.mean(values), sd)
        summary[model] = stats
        cells = " | ".join(f"{mu:.3f} ± {sd:.3f}" for mu, sd in stats.values())
        secs = statistics.median(r["seconds"] for r in rows)
        lines.append(f"| {model} | {rows[0]['parameters']} | {cells} | {secs:.0f} |")
    first = {m: results[m][0]["ci"] for m in MODELS}
    lines += ["", f"seed {args.seeds[0]}, 95 % block-bootstrap intervals (test):"]
    for model, ci in first.items():
        lines.append(
            f"- {model}: "
            + ", ".join(f"{k} {ci[k][0]:.3f}-{ci[k][1]:.3f}" for k in METRICS if ci.get(k))
        )
    exports = {}
    if not args.no_export:
        seed = args.seeds[0]
        for model in MODELS:
            exports[model] = export(out / f"{model}_seed{seed}", out / "export" / model)
        exports["gbm"]["edge"] = edge_parity(
            exports["gbm"]["bundle"], out / f"machining_seed{seed}.csv", out / f"gbm_seed{seed}"
        )
        lines += [
            "",
            "| model | INT8 bundle | parameters | val F1 torch | val F1 bundle | p50 ms |",
            "| --- | ---: | ---: | ---: | ---: | ---: |",
        ]
        for model, e in exports.items():
            lines.append(
                f"| {model} | {e['bytes'] / 1024:.1f} KB | {e['parameters']} | "
                f"{e['val_f1_torch']:.3f} | {e['val_f1_bundle']:.3f} | {e['p50_ms']:.3f} |"
            )
        lines.append(f"\nGBM bundle vs scikit-learn on the scored rows: {exports['gbm']['edge']}")
    text = "\n".join(lines)
    print(text)
    (out / "results.json").write_text(
        json.dumps({"runs": results, "summary": summary, "exports": exports}, indent=2, default=str)
    )
    (out / "results.md").write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
