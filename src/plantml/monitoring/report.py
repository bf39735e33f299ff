"""``monitor.json``, ``monitor.md`` and the figures of a monitoring run.

The markdown says first which situation the range shows (input drift within a
condition, a change of the condition mix only, unseen conditions), then the
alerts, the strongest drifts, the mix, the outputs and the performance with
its label delay.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from plantml.monitoring import plots
from plantml.monitoring.profile import ReferenceProfile
from plantml.monitoring.sinks import describe, show_time


def _clean(value: Any) -> Any:
    """JSON-safe: NaN and infinities become null, numpy scalars plain numbers."""
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    if isinstance(value, np.ndarray):
        return _clean(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _fmt(value: Any, spec: str = ".3g") -> str:
    if value is None:
        return "–"
    if isinstance(value, float | int | np.floating):
        return format(float(value), spec) if math.isfinite(float(value)) else "–"
    return str(value)


def _table(header: list[str], rows: list[list[Any]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(_fmt(c) for c in row) + " |" for row in rows]
    return out


def situation(result: dict[str, Any]) -> list[str]:
    """The headline: which of input drift, mix shift and unseen conditions the range shows."""
    checks = result["checks"]
    drift = [c for c in checks if c["verdict"]["input_drift"]]
    mix = [c for c in checks if c["verdict"]["mix_shift"]]
    unseen = [c for c in checks if c["verdict"]["unseen"]]
    kind = result["bundle"]["time_kind"]
    lines = []
    if drift:
        where: dict[tuple[str, str], Any] = {}
        for c in drift:
            for d in c["verdict"]["input_drift"]:
                where.setdefault((d["condition"], d["signal"]), c["time"])
        listed = "; ".join(
            f"{s} in {c!r} (from {show_time(t, kind)})" for (c, s), t in list(where.items())[:8]
        )
        more = f" and {len(where) - 8} more" if len(where) > 8 else ""
        lines.append(f"- **Input drift** in {len(drift)} of {len(checks)} chunks: {listed}{more}.")
    if mix:
        worst = max(c["verdict"]["mix_psi"] or 0 for c in mix)
        tail = (
            ", with no input drift within any condition: the model was trained on these conditions"
            if not drift
            else ""
        )
        lines.append(
            f"- **Condition-mix shift** in {len(mix)} chunks (PSI up to {worst:.2f}){tail}."
        )
    if unseen:
        worst = max(c["verdict"]["unseen_fraction"] or 0 for c in unseen)
        lines.append(
            f"- **Unseen conditions** in {len(unseen)} chunks (up to {worst:.1%} of the rows): "
            "the model was not trained there; its predictions are extrapolations."
        )
    if not lines:
        lines.append(
            f"- No drift in {len(checks)} chunks: inputs, condition mix and conditions match training."
        )
    return lines


def _strongest(result: dict[str, Any], limit: int = 12) -> list[list[Any]]:
    best: dict[tuple[str, str], list[Any]] = {}
    for c in result["checks"]:
        if c.get("z") is None:
            continue
        d = c["drift"]
        for b, block in enumerate(d["blocks"][:-2]):
            for j, signal in enumerate(d["signals"]):
                z = c["z"][b][j]
                if z is None:
                    continue
                row = [
                    block[:40],
                    signal,
                    z,
                    d["input"]["mean_shift"][b][j],
                    d["input"]["wasserstein"][b][j],
                    d["input"]["psi"][b][j],
                    d["input"]["ks"][b][j],
                    show_time(c["time"], result["bundle"]["time_kind"]),
                ]
                if (block, signal) not in best or z > best[(block, signal)][2]:
                    best[(block, signal)] = row
    return sorted(best.values(), key=lambda r: -r[2])[:limit]


def markdown(result: dict[str, Any], figures: dict[str, Path]) -> str:
    b = result["bundle"]
    kind = b["time_kind"]
    checks = result["checks"]
    lines = [
        f"# Monitoring report: {b['name']} ({b['version']})",
        "",
        f"{len(checks)} chunks from {show_time(checks[0]['start'], kind)} to "
        f"{show_time(checks[-1]['time'], kind)}; {result['rows']} input rows, "
        f"{sum(c.get('predictions', 0) for c in checks)} predictions. Task: {b['task']}.",
        "",
        "## What is happening",
        "",
        *situation(result),
        "",
        "## Alerts",
        "",
    ]
    alerts = result["alerts"]
    if alerts:
        lines += _table(
            ["id", "severity", "rule", "status", "opened", "message"],
            [
                [
                    a["id"],
                    a["severity"],
                    a["rule"],
                    a["status"],
                    show_time(a["opened"], kind),
                    describe(a, kind),
                ]
                for a in alerts
            ],
        )
        open_ids = {a["id"] for a in result["open_alerts"]}
        lines += [
            "",
            f"Open at the end: {len(open_ids)}; resolved in the range: {len(result['resolved'])}.",
        ]
    else:
        lines.append("None.")
    lines += ["", "## Strongest input drift (calibrated z-score, per condition and feature)", ""]
    strongest = _strongest(result)
    if strongest:
        lines += _table(
            [
                "condition",
                "signal",
                "max z",
                "mean shift (std)",
                "Wasserstein (std)",
                "PSI",
                "KS",
                "at",
            ],
            strongest,
        )
    else:
        lines.append("No chunk had enough rows per condition to test.")
    lines += ["", "## Condition mix", ""]
    ref = checks[0]["drift"]["mix"]["reference_shares"]
    total = np.sum([c["drift"]["mix"]["current_rows"] for c in checks], axis=0)
    share = total / max(total.sum(), 1)
    unseen_rows = sum(c["drift"]["mix"]["unseen_rows"] for c in checks)
    lines += _table(
        ["condition", "training share", "share in range"],
        [[name, r, s] for name, r, s in zip(b["conditions"], ref, share, strict=True)],
    )
    lines += ["", f"Rows in unseen conditions: {unseen_rows} of {result['rows']}."]
    lines += ["", "## Outputs", ""]
    out_rows = []
    for c in checks[-1:]:
        o = c["drift"]["output"]
        if o.get("reference"):
            for i, name in enumerate(c["drift"]["blocks"]):
                out_rows.append(
                    [
                        name[:40],
                        o["n"][i],
                        o["psi"][i],
                        o["mean"][i],
                        o["reference_mean"][i],
                        (o.get("alarm_rate") or [None] * 99)[i],
                        (o.get("reference_alarm_rate") or [None] * 99)[i],
                    ]
                )
    if out_rows:
        lines += ["Last chunk:", ""]
        lines += _table(
            [
                "block",
                "predictions",
                "PSI",
                "mean",
                "validation mean",
                "alarm rate",
                "validation alarm rate",
            ],
            out_rows,
        )
    else:
        lines.append("No predictions, or the bundle has no output reference.")
    lines += ["", "## Performance", ""]
    lines += _performance(result)
    if result["notes"]:
        lines += ["", "## Notes", "", *[f"- {n}" for n in result["notes"]]]
    lines += ["", "## Figures", ""]
    lines += [f"![{name}]({path.name})" for name, path in figures.items()]
    return "\n".join(lines) + "\n"


def _performance(result: dict[str, Any]) -> list[str]:
    perf = result.get("performance")
    estimated = [c["figures"] for c in result["checks"] if "estimated_f1" in c["figures"]]
    lines: list[str] = []
    if not perf or not perf.get("scored"):
        lines.append(
            "No labels: pass --events (failures, maintenance, inspections, confirmed anomalies) "
            "with the predictions to score them once their labels are known."
        )
    else:
        unit = "s" if result["bundle"]["time_kind"] == "datetime" else "cycles"
        delay = perf["label_delay"]
        lines += [
            f"{perf['labeled']} predictions labeled, {perf['pending']} still waiting for their "
            f"label, {perf['censored']} censored (a maintenance ended the life first). Label "
            f"delay: median {_fmt(delay['median'])} {unit}, 90th percentile {_fmt(delay['p90'])} {unit}.",
            "",
        ]
        overall = perf["overall"]
        lines += _table(list(overall), [list(overall.values())])
        if perf["by_condition"]:
            keys = list(next(iter(perf["by_condition"].values())))
            lines += ["", "By condition:", ""]
            lines += _table(
                ["condition", *keys],
                [[c[:40], *m.values()] for c, m in perf["by_condition"].items()],
            )
        if perf.get("failures"):
            lines += ["", "Failures:", ""]
            lines += _table(
                ["asset", "time", "detected", "lead time"],
                [
                    [
                        f["asset"],
                        show_time(f["time"], result["bundle"]["time_kind"]),
                        f["detected"],
                        f["lead_time"],
                    ]
                    for f in perf["failures"]
                ],
            )
    if estimated:
        lines += [
            "",
            "Estimated without labels (calibrated probabilities), against the labels where known:",
            "",
        ]
        rows = []
        for c, o in zip(
            result["checks"],
            (perf or {}).get("over_time") or [None] * len(result["checks"]),
            strict=False,
        ):
            if "estimated_f1" in c["figures"]:
                rows.append(
                    [
                        show_time(c["start"], result["bundle"]["time_kind"]),
                        c["figures"]["estimated_precision"],
                        c["figures"]["estimated_recall"],
                        c["figures"]["estimated_f1"],
                        None if o is None else o.get("f1"),
                        None if o is None else o.get("labeled"),
                    ]
                )
        lines += _table(
            ["chunk", "est. precision", "est. recall", "est. F1", "F1 (labels)", "labeled"], rows
        )
    return lines


def write_report(
    result: dict[str, Any], profile: ReferenceProfile, out_dir: str | Path
) -> list[Path]:
    """Write monitor.json, monitor.md and the PNG figures into ``out_dir``; returns the files."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    figures: dict[str, Path] = {}
    out_counts = np.asarray(result["output_counts"])
    for name, make in (
        ("drift heatmap", lambda p: plots.drift_heatmap(result, p)),
        ("condition mix", lambda p: plots.condition_mix(result, p)),
        ("outputs", lambda p: plots.output_distribution(result, profile, out_counts, p)),
        ("performance", lambda p: plots.performance(result, p)),
    ):
        path = make(out / f"{name.replace(' ', '_')}.png")
        if path is not None:
            figures[name] = path
    json_path = out / "monitor.json"
    json_path.write_text(
        json.dumps(_clean({**result, "figures": [str(p) for p in figures.values()]}), indent=1)
        + "\n"
    )
    md_path = out / "monitor.md"
    md_path.write_text(markdown(result, figures), encoding="utf-8")
    return [json_path, md_path, *figures.values()]
