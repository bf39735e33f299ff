"""C-MAPSS models compared by k-fold cross-validation over units, with the truncated protocol.

For each model, ``plantml-cv``'s machinery trains ``experiment=cmapss_rul`` once per fold
(every unit validated exactly once) into ``<out>/cv_<subset>_<model>/`` (finished folds are
read back, so an interrupted run resumes), then prints one row per model: validation RMSE
over all windows and under the truncated (official-test) protocol, mean ± std over folds,
and the truncated protocol pooled over all units (one cut of every unit per draw, 10 draws:
mean ± std over draws). With ``--export`` the fold-0 checkpoint of each model is exported
(``export=int8``) and its bundle's size and validation RMSE are printed beside the float
model's.

The measurement in the README (2-core machine shared with other jobs):

    OMP_NUM_THREADS=1 OMP_WAIT_POLICY=PASSIVE .venv/bin/python scripts/bench_cv.py \
        --subset FD001 --folds 5 --models lstm gbm --export --out outputs/bench
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def cross_validate(subset: str, model: str, folds: int, out: Path, extra: list[str]) -> dict:
    from omegaconf import OmegaConf

    from plantml import api
    from plantml.evaluation.crossval import fold_overrides, run_folds, summarize

    overrides = [
        "experiment=cmapss_rul",
        f"data.subset={subset}",
        f"model={model}",
        "logger=csv",
        "callbacks.progress_bar.refresh_rate=0",
        *extra,
    ]
    metrics = run_folds(overrides, folds, out)
    cfg = api.compose(fold_overrides(overrides, folds, 0), output_dir=out)
    return summarize(out, metrics, OmegaConf.to_container(cfg.truncated, resolve=True))


def export_fold0(run: Path, out: Path) -> dict:
    from plantml import api

    report = api.export(run, "int8", out, ["measure.repeats=50"])
    first, last = report["variants"][0], report["variants"][-1]
    return {
        "variant": last["name"],
        "bytes": last["bytes"],
        "parameters": last["parameters"],
        "val_rmse_float": first["metrics"]["overall"]["rmse"],
        "val_rmse_bundle": last["metrics"]["overall"]["rmse"],
    }


def _pm(stats: dict) -> str:
    return f"{stats['mean']:.2f} ± {stats['std']:.2f}" if stats.get("mean") is not None else "–"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subset", default="FD001")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--models", nargs="+", default=["lstm", "gbm"])
    parser.add_argument("--out", default="outputs/bench")
    parser.add_argument("--export", action="store_true", help="INT8 bundle of each fold-0 model")
    parser.add_argument("overrides", nargs="*", help="more plantml-train overrides for every run")
    args = parser.parse_args(argv)
    from plantml.cli.common import quiet_libraries

    quiet_libraries()
    rows = {}
    for model in args.models:
        out = Path(args.out) / f"cv_{args.subset.lower()}_{model}"
        result = cross_validate(args.subset, model, args.folds, out, list(args.overrides))
        row = {"result": result}
        if args.export:
            row["export"] = export_fold0(out / "fold0", out / "export")
        rows[model] = row
    lines = [
        f"C-MAPSS {args.subset}, {args.folds}-fold CV over units",
        "",
        "| model | parameters | val RMSE (all windows) | val RMSE truncated | "
        "truncated, pooled over all units | epochs | INT8 bundle | fold-0 RMSE float / INT8 |",
        "| --- | ---: | --- | --- | --- | --- | ---: | --- |",
    ]
    for model, row in rows.items():
        s = row["result"]["summary"]
        pooled = row["result"].get("pooled", {}).get("val_truncated", {})
        folds = row["result"]["per_fold"]
        params = json.loads(
            (
                Path(args.out) / f"cv_{args.subset.lower()}_{model}" / "fold0" / "metrics.json"
            ).read_text()
        ).get("model/parameters")
        e = row.get("export")
        size = f"{e['bytes'] / 1024:.1f} KB" if e else "–"
        rmse = f"{e['val_rmse_float']:.2f} / {e['val_rmse_bundle']:.2f}" if e else "–"
        pooled_text = (
            f"{pooled['rmse_draw_mean']:.2f} ± {pooled['rmse_draw_std']:.2f} "
            f"({pooled['units']} units)"
            if pooled
            else "–"
        )
        lines.append(
            f"| {model} | {params} | {_pm(s['val/rmse'])} | "
            f"{_pm(s.get('val_truncated/rmse_draw_mean', {}))} | {pooled_text} | "
            f"{', '.join(str(f.get('epochs')) for f in folds)} | {size} | {rmse} |"
        )
    text = "\n".join(lines)
    print(text)
    summary = Path(args.out) / f"cv_{args.subset.lower()}_summary.md"
    summary.write_text(text + "\n")
    (summary.with_suffix(".json")).write_text(json.dumps(rows, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
