"""Edge-export targets on C-MAPSS FD001 with the LSTM: INT8 size / accuracy / latency, distillation.

Trains the ``cmapss_rul`` experiment (or takes ``--ckpt``), then runs the
export recipes side by side in one process and checks the targets:

- INT8 bundle at most 30 % of the fp32 ONNX size, RMSE within 0.5 of fp32,
  single-window p50 latency on one thread at least 3x faster than torch eager;
- a distilled student with at most 10 % of the teacher's parameters within
  1.5 RMSE of it.

Reproduce (about 4 minutes on 2 CPU cores; run nothing else meanwhile)::

    .venv/bin/python scripts/bench_export.py \\
        --data ../shared/data --recipes int8 pruned_int8 distilled_int8
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from plantml.threads import limit_threads

REPO = Path(__file__).resolve().parents[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=str(REPO.parent / "shared" / "data"))
    parser.add_argument("--ckpt", help="a trained cmapss_rul checkpoint (default: train one)")
    parser.add_argument("--epochs", type=int, default=40, help="teacher training epochs")
    parser.add_argument("--recipes", nargs="+", default=["int8", "pruned_int8", "distilled_int8"])
    parser.add_argument("--out", default=str(REPO / "outputs" / "bench_export"))
    parser.add_argument("--repeats", type=int, default=500, help="latency samples per variant")
    parser.add_argument(
        "--threads",
        type=int,
        default=2,
        help="torch/OpenMP threads, here and in every process it starts (default 2)",
    )
    args = parser.parse_args()
    limit_threads(args.threads)
    if not (Path(args.data) / "cmapss").is_dir():
        print(f"C-MAPSS not found under {args.data}; pass --data", file=sys.stderr)
        return 2
    os.environ["PLANTML_DATA"] = str(Path(args.data).resolve())
    from plantml import api
    from plantml.cli.common import quiet_libraries
    from plantml.evaluation.report import markdown_table
    from plantml.export.recipe import run_export

    quiet_libraries()
    out = Path(args.out)
    ckpt = args.ckpt
    if ckpt is None:
        cfg = api.compose(
            [
                "experiment=cmapss_rul",
                "logger=csv",
                f"trainer.max_epochs={args.epochs}",
                "bootstrap=0",
                "callbacks.progress_bar.refresh_rate=0",
            ],
            output_dir=out / "teacher",
        )
        ckpt = api.train(cfg)["best_checkpoint"]
    rows, checks = [], []
    for recipe in args.recipes:
        cfg = api.compose(
            [
                f"ckpt_path={ckpt}",
                f"export={recipe}",
                f"export_dir={out}",
                f"measure.repeats={args.repeats}",
            ],
            output_dir=out / "hydra",
            config_name="export",
        )
        report = run_export(cfg)
        torch_v, fp32 = report["variants"][0], report["variants"][1]
        shared = {"torch_fp32", "onnx_fp32"} if rows else set()  # the same in every recipe
        for v in (v for v in report["variants"] if v["name"] not in shared):
            rows.append(
                {
                    "recipe": recipe,
                    "variant": v["name"],
                    "size KB": v["bytes"] / 1024,
                    "size vs fp32": v["bytes"] / fp32["bytes"],
                    "parameters": v["parameters"],
                    "params vs teacher": v["parameters"] / fp32["parameters"],
                    "p50 ms": v["latency"]["p50_ms"],
                    "p99 ms": v["latency"]["p99_ms"],
                    "speed-up vs torch": torch_v["latency"]["p50_ms"] / v["latency"]["p50_ms"],
                    "windows/s": v["throughput"],
                    "rmse": v["metrics"]["overall"]["rmse"],
                    "Δ rmse": v["metrics"]["overall"]["rmse"] - fp32["metrics"]["overall"]["rmse"],
                }
            )
        final = report["variants"][-1]
        d_rmse = final["metrics"]["overall"]["rmse"] - fp32["metrics"]["overall"]["rmse"]
        speed = torch_v["latency"]["p50_ms"] / final["latency"]["p50_ms"]
        if recipe == "int8":
            checks += [
                ("int8 size <= 30 % of fp32", final["bytes"] / fp32["bytes"], 0.30, "<="),
                ("int8 rmse within 0.5 of fp32", d_rmse, 0.5, "<="),
                ("int8 p50 speed-up vs torch >= 3x", speed, 3.0, ">="),
            ]
        if recipe.startswith("distilled"):
            ratio = final["parameters"] / fp32["parameters"]
            checks += [
                ("student params <= 10 % of teacher", ratio, 0.10, "<="),
                ("student rmse within 1.5 of teacher", d_rmse, 1.5, "<="),
            ]
    print(f"\ncheckpoint: {ckpt}\n")
    print(markdown_table(rows))
    verdicts = [
        {
            "target": name,
            "measured": value,
            "limit": limit,
            "met": value <= limit if op == "<=" else value >= limit,
        }
        for name, value, limit, op in checks
    ]
    print(markdown_table(verdicts))
    (out / "bench_export.json").write_text(
        json.dumps({"rows": rows, "targets": verdicts}, indent=2)
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
