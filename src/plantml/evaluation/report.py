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
    "accuracy": "accuracy",
    "macro_f1": "macro F1",
    "balanced_accuracy": "balanced accuracy",
    "auroc": "AUROC",
    "auprc": "AUPRC",
    "false_alarm_rate": "false-alarm rate",
    "missed_alarm_rate": "missed-alarm rate",
    "detected_share": "events detected",
    "detection_delay": "delay (windows)",
    "events": "events",
    "false_alarms_per_1000": "false alarms /1000",
    "false_alarms_per_asset_day": "false alarms /asset-day",
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
    scored = set(metrics.get("by_condition", {}))  # evaluated splits (not train/…, model/…)
    splits = sorted({k.split("/", 1)[0] for k in metrics if "/" in k} & scored)
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
        anomaly = any(k.endswith("/false_alarm_rate") for k in metrics)
        chosen = "calibrated on normal validation windows" if anomaly else "best F1 on validation"
        extra.append(f"alarm threshold {threshold:.3f} ({chosen})")
    if metrics.get("train/windows_per_second"):
        extra.append(f"training throughput {metrics['train/windows_per_second']:,.0f} windows/s")
    if output_dir is not None:
        extra.append(f"outputs in {output_dir}")
    data = metrics.get("data") or {}
    if data.get("features"):
        console.print(f"inputs ({len(data['features'])}): {', '.join(data['features'])}")
    for warning in data.get("warnings", []):
        console.print(f"[yellow]data warning:[/yellow] {warning}")
    if extra:
        console.print("; ".join(extra))


def markdown_table(rows: list[dict], columns: list[str] | None = None) -> str:
    """A GitHub-flavoured markdown table of ``rows`` (numbers to 3 decimals)."""
    if not rows:
        return "(no rows)\n"
    columns = columns or list(rows[0])

    def cell(value) -> str:
        if isinstance(value, list | tuple) and len(value) == 2:
            return f"[{_fmt(value[0])}, {_fmt(value[1])}]"
        return _fmt(value).replace("|", "\\|")

    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join(" --- " for _ in columns) + "|"]
    lines += ["| " + " | ".join(cell(row.get(c)) for c in columns) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def _with_ci(value, ci) -> str:
    if value is None:
        return "–"
    text = _fmt(value)
    return f"{text} [{_fmt(ci[0])}, {_fmt(ci[1])}]" if ci else text


def report_markdown(
    metrics: dict, title: str, gate_lines: list[str] | None = None, plots: list[str] | None = None
) -> str:
    """report.md: overall and per-condition tables with 95 % asset-bootstrap intervals,
    the worst condition, training coverage, the gate verdict and the plots."""
    splits = list(metrics.get("by_condition", {}))
    out = [f"# {title}", ""]
    if gate_lines:
        out += ["## Validation gate", "", *[f"- {line}" for line in gate_lines], ""]
    for split in splits:
        intervals = metrics.get("intervals", {}).get(split, {})
        overall = {k.split("/", 1)[1]: v for k, v in metrics.items() if k.startswith(f"{split}/")}
        names = [m for m in _metric_names([overall]) if m not in ("n", "positives")]
        out += [
            f"## {split}",
            "",
            "Values with 95 % intervals from resampling assets (windows of one asset are not independent).",
            "",
        ]
        row = {COLUMNS[m]: _with_ci(overall.get(m), intervals.get(m)) for m in names}
        row["windows"] = overall.get("n")
        row["assets"] = overall.get("assets")
        out.append(markdown_table([row]))
        rows = []
        for cond, m in metrics["by_condition"][split].items():
            r = {"condition": cond, "windows": m.get("n"), "assets": m.get("assets")}
            r.update({COLUMNS[k]: _with_ci(m.get(k), (m.get("ci") or {}).get(k)) for k in names})
            cov = metrics.get("coverage", {}).get(split, {}).get(cond)
            if cov:
                r["training windows"] = cov["train_windows"]
            rows.append(r)
        out += ["### By operating condition", "", markdown_table(rows)]
        worst = metrics.get("worst_condition", {}).get(split)
        if worst:
            out.append(
                f"Worst condition by {worst['metric']}: **{worst['condition']}** "
                f"({_fmt(worst['value'])} against {_fmt(worst['overall'])} overall, gap {worst['gap']:+.3f}).\n"
            )
        warnings = [
            c["warning"]
            for c in metrics.get("coverage", {}).get(split, {}).values()
            if "warning" in c
        ]
        if warnings:
            out += ["Coverage warnings:", "", *[f"- {w}" for w in warnings], ""]
    data = metrics.get("data") or {}
    if data.get("features") or data.get("warnings"):
        out += ["## Data", ""]
        if data.get("features"):
            out += [f"Model inputs ({len(data['features'])}): {', '.join(data['features'])}", ""]
        out += [f"- warning: {w}" for w in data.get("warnings", [])]
        out.append("")
    if plots:
        out += ["## Plots", "", *[f"![{p}]({p})" for p in plots], ""]
    return "\n".join(out)


def print_cv(result: dict, title: str) -> None:
    """The cross-validation summary (:mod:`plantml.evaluation.crossval`) as a table."""
    table = Table(title=title, title_justify="left")
    for column, justify in (
        ("metric", "left"),
        ("mean", "right"),
        ("std", "right"),
        ("min", "right"),
        ("max", "right"),
    ):
        table.add_column(column, justify=justify)
    for key, stats in result["summary"].items():
        if stats["mean"] is None:
            continue
        table.add_row(key, *(_fmt(stats[k]) for k in ("mean", "std", "min", "max")))
    console = Console()
    console.print(table)
    for split, pooled in result.get("pooled", {}).items():
        text = ", ".join(f"{k} {_fmt(v)}" for k, v in pooled.items())
        console.print(f"pooled {split} (every asset scored once, by its fold): {text}")
