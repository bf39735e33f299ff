"""SKAB valve1 under SKAB's own scoring, with one global threshold and per-asset thresholds.

Trains ``experiment=skab_anomaly`` (valve1 + anomaly-free, first 400 rows of each file
train, the rest is scored) with each model, then prints, on the test parts:

- plantml's window scoring (a window's label is its last row; one global threshold);
- SKAB's point scoring (:mod:`plantml.evaluation.skab`: a point alarms after a full window
  of exceedances, F1 / FAR / MAR pooled over the files) with the same global threshold
  (**before**) and with each file's threshold from its own first 400 rows, 0.999 quantile
  x 4/3 as SKAB's reference autoencoders calibrate (**after**).

Runs whose metrics.json exists are read back. The measurement in the README:

    OMP_NUM_THREADS=1 OMP_WAIT_POLICY=PASSIVE .venv/bin/python scripts/bench_skab.py \
        --models conv_ae iforest --out outputs/bench/skab
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def run(model: str, out: Path, extra: list[str]) -> dict:
    from plantml import api

    if (out / "metrics.json").is_file():
        return json.loads((out / "metrics.json").read_text())
    cfg = api.compose(
        [
            "experiment=skab_anomaly",
            f"model={model}",
            "logger=csv",
            "callbacks.progress_bar.refresh_rate=0",
            "bootstrap=0",
            *extra,
        ],
        output_dir=out,
    )
    return api.train(cfg)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["conv_ae", "iforest"])
    parser.add_argument("--out", default="outputs/bench/skab")
    parser.add_argument("overrides", nargs="*", help="more plantml-train overrides")
    args = parser.parse_args(argv)
    from plantml.cli.common import quiet_libraries

    quiet_libraries()
    lines = [
        "| model | parameters | window F1 / FAR (global threshold) | SKAB F1 / FAR / MAR, "
        "global threshold | SKAB F1 / FAR / MAR, per-file threshold from its head |",
        "| --- | ---: | --- | --- | --- |",
    ]
    for model in args.models:
        m = run(model, Path(args.out) / model, list(args.overrides))

        def triple(prefix: str, m=m) -> str:
            return " / ".join(f"{m[f'test/{prefix}_{k}']:.3f}" for k in ("f1", "far", "mar"))

        lines.append(
            f"| {model} | {m.get('model/parameters')} | {m['test/f1']:.3f} / "
            f"{m['test/false_alarm_rate']:.3f} | {triple('skab')} | {triple('skab_asset')} |"
        )
    text = "\n".join(lines)
    print(text)
    (Path(args.out) / "results.md").write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
