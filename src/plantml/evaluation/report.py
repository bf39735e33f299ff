"""Readable result tables in the terminal (rich) for a metrics.json payload."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.table import Table

# metric → column heading, in display order
COLUMNS = {
    "rmse": "RMSE",
    "mae": "MAE",
    "score": "PHM08 score",
    "bias": "bias",
    "f1": "F1",
    "precision": "precision",
    "recall": "recall",
    "auroc": "AUROC",
    "auprc": "AUPRC",
    "false_alarms_per_1000": "false alarms /1000",
    "positives": "positives",
    "n": "windows",
}


def _fmt(value) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.3f}" if abs(value) < 1e4 else f"{value:.3e}"
    return str(value)


def _metric_names(rows: list[dict]) -> list[str]:
    present = {k for row in rows for k in row}
    return [m for m in COLUMNS if m in present]


def results_tables(metrics: dict, title: str = "results") -> list[Table]:
    """An overall table (one row per split) and a per-condition table per split."""
    splits = sorted({k.split("/", 1)[0] for k in metrics if "/" in k and not k.startswith("train")})
    overall = {
        s: {k.split("/", 1)[1]: v for k, v in metrics.items() if k.startswith(f"{s}/")}
        for s in splits
    }
    names = _metric_names(list(overall.values()))
    tables = []
    table = Table(title=title, title_justify="left")
    table.add_column("split")
    for name in names:
        table.add_column(COLUMNS[name], justify="right")
    for split in splits:
        table.add_row(split, *(_fmt(overall[split].get(n)) for n in names))
    tables.append(table)
    for split, by_cond in metrics.get("by_condition", {}).items():
        if len(by_cond) < 2:
            continue
        names = _metric_names(list(by_cond.values()))
        table = Table(title=f"{split} by operating condition", title_justify="left")
        table.add_column("condition")
        for name in names:
            table.add_column(COLUMNS[name], justify="right")
        for cond, row in by_cond.items():
            table.add_row(cond, *(_fmt(row.get(n)) for n in names))
        tables.append(table)
    return tables


def print_results(metrics: dict, title: str = "results", output_dir: Path | None = None) -> None:
    console = Console(width=max(Console().width, 120))
    for table in results_tables(metrics, title):
        console.print(table)
    extra = []
    threshold = next((v for k, v in metrics.items() if k.endswith("/threshold")), None)
    if threshold is not None:
        extra.append(f"alarm threshold {threshold:.3f} (best F1 on validation)")
    if metrics.get("train/windows_per_second"):
        extra.append(f"training throughput {metrics['train/windows_per_second']:,.0f} windows/s")
    if output_dir is not None:
        extra.append(f"outputs in {output_dir}")
    if extra:
        console.print("; ".join(extra))
