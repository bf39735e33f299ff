"""The export report: every variant's size, speed and accuracy, as JSON, markdown and a plot."""

from __future__ import annotations

from pathlib import Path

from matplotlib.figure import Figure
from matplotlib.ticker import NullFormatter

from plantml.evaluation.metrics import HIGHER_IS_WORSE
from plantml.evaluation.report import markdown_table
from plantml.evaluation.results import write_json


def _kb(n: int | None) -> str:
    return "" if n is None else f"{n / 1024:,.1f}"


def variant_rows(variants: list[dict], metric: str) -> list[dict]:
    """One table row per variant: format, size, parameters, latency, throughput, accuracy."""
    rows = []
    for v in variants:
        overall = v["metrics"]["overall"]
        rows.append(
            {
                "variant": v["name"],
                "format": v["format"],
                "size KB": _kb(v["bytes"]),
                "parameters": f"{v['parameters']:,}",
                "nonzero": f"{v['nonzero_parameters']:,}",
                "p50 ms": f"{v['latency']['p50_ms']:.3f}",
                "p99 ms": f"{v['latency']['p99_ms']:.3f}",
                "windows/s": f"{v['throughput']:,.0f}",
                metric: "" if overall.get(metric) is None else f"{overall[metric]:.4g}",
                "max abs diff vs torch": ""
                if not v.get("parity")
                else f"{v['parity']['max_abs']:.2g}",
            }
        )
    return rows


def condition_rows(variants: list[dict], metric: str) -> list[dict]:
    """The headline metric of each variant in each operating condition."""
    names = list(variants[0]["metrics"]["by_condition"])
    rows = []
    for v in variants:
        by = v["metrics"]["by_condition"]
        row = {"variant": v["name"]}
        for name in names:
            value = by.get(name, {}).get(metric)
            row[name] = "" if value is None else f"{value:.4g}"
        rows.append(row)
    return rows


def tradeoff_plot(variants: list[dict], metric: str, path: Path) -> Path:
    """Size and latency against the headline metric, one point per variant."""
    fig = Figure(figsize=(10, 4), layout="constrained")
    axes = fig.subplots(1, 2, sharey=True)
    for ax, key, label in (
        (axes[0], lambda v: v["bytes"] / 1024, "size (KB)"),
        (axes[1], lambda v: v["latency"]["p50_ms"], "single-window p50 latency (ms, 1 thread)"),
    ):
        for i, v in enumerate(variants):
            y = v["metrics"]["overall"].get(metric)
            if y is None:
                continue
            x = key(v)
            marker = "s" if v["format"] == "torch" else "o"
            ax.scatter([x], [y], marker=marker, s=50)
            offset = (5, 4 - 12 * (i % 2))  # neighbours (torch and ONNX fp32) do not overlap
            ax.annotate(v["name"], (x, y), textcoords="offset points", xytext=offset, fontsize=8)
        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel(label)
        ax.grid(alpha=0.3)
    better = "lower" if metric in HIGHER_IS_WORSE else "higher"
    axes[0].set_ylabel(f"{metric} ({better} is better)")
    fig.suptitle("export variants: size / latency / accuracy")
    fig.savefig(path, dpi=110)
    return path


def write_report(out_dir: Path, report: dict) -> list[Path]:
    """``export_report.json``, ``export_report.md`` and ``tradeoff.png`` in ``out_dir``."""
    variants, metric = report["variants"], report["headline_metric"]
    json_path = out_dir / "export_report.json"
    write_json(json_path, report)
    lines = [
        f"# Export report: {report['name']}",
        "",
        f"Checkpoint `{report['checkpoint']}`, recipe `{report['recipe']}`; scored on "
        f"{report['scored_windows']} {report['split']} windows. Latency: one window, one thread "
        f"(median and 99th percentile); throughput: batches of {report['batch_size']}, one thread.",
        "",
        markdown_table(variant_rows(variants, metric)),
        "",
        f"## {metric} per operating condition",
        "",
        markdown_table(condition_rows(variants, metric)),
        "",
        f"Bundle: `{report['bundle']}` ({report['final_variant']}).",
    ]
    for note in report.get("notes", []):
        lines.append(f"- {note}")
    md_path = out_dir / "export_report.md"
    md_path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return [json_path, md_path, tradeoff_plot(variants, metric, out_dir / "tradeoff.png")]


def print_summary(report: dict) -> None:
    """The variants as a table on the console, then where the bundle is and how to run it."""
    from rich.console import Console
    from rich.table import Table

    metric = report["headline_metric"]
    columns = ["variant", "size KB", "parameters", "p50 ms", "windows/s", metric]
    rows = variant_rows(report["variants"], metric)
    table = Table(title=f"{report['name']}: export variants ({report['split']}, 1 thread)")
    for column in columns:
        table.add_column(column, justify="left" if column == "variant" else "right")
    for row in rows:
        table.add_row(*(str(row[c]) for c in columns))
    console = Console()
    console.print(table)
    for note in report.get("notes", []):
        console.print(f"note: {note}")
    from plantml.shell import runnable

    console.print(
        f"bundle {report['bundle']}: {report['size_ratio_vs_onnx_fp32']:.0%} of the fp32 ONNX "
        f"size, {report['latency_speedup_vs_torch']:.1f}x faster than torch per window\n"
        f"run it on sample rows: {runnable('plantml-edge')} predict --bundle {report['bundle']} "
        f"--input {report.get('sample_rows', 'rows.csv')} --output predictions.csv",
        soft_wrap=True,
    )
