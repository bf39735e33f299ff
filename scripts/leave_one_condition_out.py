"""Leave-one-condition-out: how does the model cope with an operating regime it never saw?

For every operating condition ``c``: train with ``c`` kept out of training and
validation (``data.conditions.exclude_from_training=[c]``), then score the
held-out test assets' windows in ``c``. A baseline trained on every condition,
with the same seed and splits, gives the "seen" figure for comparison.

Writes ``loco.csv``, ``loco.md`` and ``loco.png`` into ``--out``.

Reproduce (synthetic fleet regimes; C-MAPSS FD002 needs a test split, added automatically):

    .venv/bin/python scripts/leave_one_condition_out.py --out outputs/loco-synthetic \
        experiment=synthetic_failure logger=csv trainer.max_epochs=6
    .venv/bin/python scripts/leave_one_condition_out.py --out outputs/loco-fd002 \
        experiment=cmapss_rul data.subset=FD002 logger=csv trainer.max_epochs=15
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from plantml import api
from plantml.evaluation.metrics import HEADLINE, HIGHER_IS_WORSE
from plantml.evaluation.report import markdown_table
from plantml.threads import limit_threads


def run(overrides: list[str], out: Path, name: str) -> dict:
    cfg = api.compose([*overrides, "bootstrap=200"], output_dir=out / name)
    return api.train(cfg)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=Path("outputs/loco"))
    parser.add_argument("--conditions", nargs="*", default=None, help="default: every condition")
    parser.add_argument("overrides", nargs="*", help="plantml-train overrides")
    parser.add_argument(
        "--threads",
        type=int,
        default=2,
        help="torch/OpenMP threads, here and in every process it starts (default 2)",
    )
    args = parser.parse_args()
    limit_threads(args.threads)
    overrides = list(args.overrides)
    cfg = api.compose(overrides, output_dir=args.out / "probe")
    if not cfg.data.split_by.test_fraction:
        overrides.append(
            "data.split_by.test_fraction=0.2"
        )  # the held-out condition is scored on test assets
    kind = api.datamodule(api.compose(overrides, output_dir=args.out / "probe")).data.target_kind
    metric = HEADLINE[kind]
    higher_is_worse = metric in HIGHER_IS_WORSE
    baseline = run(overrides, args.out, "all_conditions")
    conditions = args.conditions or list(baseline["by_condition"]["test"])
    rows = []
    for cond in conditions:
        quoted = cond.replace("'", "\\'")
        held = run(
            [*overrides, f"data.conditions.exclude_from_training=['{quoted}']"],
            args.out,
            f"without_{len(rows)}",
        )
        seen = baseline["by_condition"]["test"].get(cond, {})
        unseen = held["by_condition"]["test"].get(cond, {})
        rows.append(
            {
                "condition": cond,
                "test_windows": unseen.get("n"),
                "test_assets": unseen.get("assets"),
                f"{metric}_seen": seen.get(metric),
                f"{metric}_unseen": unseen.get(metric),
                f"{metric}_unseen_ci": (unseen.get("ci") or {}).get(metric),
                "change": None
                if seen.get(metric) is None or unseen.get(metric) is None
                else unseen[metric] - seen[metric],
            }
        )
    table = pd.DataFrame(rows)
    args.out.mkdir(parents=True, exist_ok=True)
    table.to_csv(args.out / "loco.csv", index=False)
    (args.out / "loco.md").write_text(
        f"# Leave-one-condition-out ({metric}, test assets; {'higher' if higher_is_worse else 'lower'} is worse)\n\n"
        + markdown_table(rows)
    )
    from matplotlib.figure import Figure

    fig = Figure(figsize=(1.6 * len(table) + 2, 3.5))
    ax = fig.subplots()
    x = range(len(table))
    ax.bar([i - 0.2 for i in x], table[f"{metric}_seen"].fillna(0), 0.4, label="trained with it")
    ax.bar([i + 0.2 for i in x], table[f"{metric}_unseen"].fillna(0), 0.4, label="never seen")
    ax.set_xticks(list(x))
    ax.set_xticklabels(table["condition"], fontsize=8)
    ax.set_ylabel(metric)
    ax.set_title("leave-one-condition-out (test assets)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(args.out / "loco.png", dpi=110)
    print((args.out / "loco.md").read_text())


if __name__ == "__main__":
    main()
