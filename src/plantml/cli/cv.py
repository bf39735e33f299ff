"""plantml-cv: k-fold cross-validation over assets, one ``plantml-train`` run per fold.

    plantml-cv --folds 5 --out outputs/cv/cmapss_lstm experiment=cmapss_rul logger=csv
    plantml-cv --folds 5 --out outputs/cv/cmapss_gbm experiment=cmapss_rul model=gbm

Every argument after the options is a ``plantml-train`` override. Writes ``fold<i>/``
(ordinary run folders), ``cv.json`` and ``cv.md`` (mean ± std [min, max] over folds, per
fold, per condition, and pooled over all assets) into ``--out``; run it again to resume
(finished folds are read back, not retrained). Exit status 2 on a configuration error.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from plantml.cli.common import quiet_libraries, user_errors


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="plantml-cv",
        description="k-fold cross-validation over assets: k plantml-train runs, one per fold, "
        "and the mean and spread of their validation metrics.",
        epilog="example: plantml-cv --folds 5 --out outputs/cv/fd001 experiment=cmapss_rul "
        "logger=csv",
    )
    parser.add_argument("--folds", type=int, default=5, help="number of folds k (default 5)")
    parser.add_argument("--out", required=True, help="folder for the fold runs and cv.json")
    parser.add_argument(
        "--only", type=int, nargs="+", help="train only these folds (0-based); summary over all"
    )
    parser.add_argument("overrides", nargs="*", help="plantml-train overrides (key=value)")
    return parser


@user_errors
def run(args: argparse.Namespace) -> dict:
    from omegaconf import OmegaConf

    from plantml import api
    from plantml.evaluation.crossval import fold_overrides, run_folds, summarize
    from plantml.evaluation.report import print_cv

    out = Path(args.out)
    metrics = run_folds(list(args.overrides), args.folds, out, args.only)
    if args.only is not None and len(args.only) < args.folds:
        return {}
    cfg = api.compose(fold_overrides(list(args.overrides), args.folds, 0), output_dir=out)
    truncated = OmegaConf.to_container(cfg.get("truncated") or {}, resolve=True)
    result = summarize(out, metrics, truncated)
    print_cv(result, f"{args.folds}-fold cross-validation: {out}")
    return result


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    quiet_libraries()
    run(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
