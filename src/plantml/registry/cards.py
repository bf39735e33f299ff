"""Model cards after the Model Card Toolkit's fields, from what the registry holds.

:func:`model_card` builds the card (JSON: ``model_details``, ``model_parameters``,
``quantitative_analysis``, ``considerations``, plus plantml's ``export``, ``gate``,
``approvals`` and ``deployments``) for one version; :func:`card_markdown` renders it. The
static part is generated and stored at registration; approvals and deployments are filled in
from the store each time a card is shown.
"""

from __future__ import annotations

from typing import Any

INTERVAL_NOTE = "95 % interval from resampling assets"


def _fmt(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _performance(record: dict) -> list[dict[str, Any]]:
    """One entry per (source, slice, metric), with intervals where the training run has them."""
    out = []
    bundle = (record.get("metrics") or {}).get("bundle") or {}
    task = record["bundle"]["task"]["kind"]
    keep = {"rul": ("rmse", "mae", "bias"), "class": ("accuracy", "macro_f1")}.get(
        task, ("f1", "precision", "recall", "auroc", "false_alarms_per_1000")
    )
    for slice_name, values in [
        ("overall", bundle.get("overall") or {}),
        *list((bundle.get("by_condition") or {}).items()),
    ]:
        for metric in keep:
            if values.get(metric) is not None:
                out.append(
                    {
                        "type": metric,
                        "value": values[metric],
                        "slice": slice_name,
                        "source": f"bundle ({bundle.get('split')})",
                        "n": values.get("n"),
                        "confidence_interval": None,
                    }
                )
    training = (record.get("metrics") or {}).get("training") or {}
    for split, conditions in (training.get("by_condition") or {}).items():
        overall_ci = (training.get("intervals") or {}).get(split) or {}
        slices = [
            (
                "overall",
                {
                    k.split("/", 1)[1]: v
                    for k, v in (training.get("overall") or {}).items()
                    if k.startswith(f"{split}/")
                },
                overall_ci,
            )
        ]
        slices += [(name, vals, vals.get("ci") or {}) for name, vals in conditions.items()]
        for slice_name, values, ci in slices:
            for metric in keep:
                if values.get(metric) is None:
                    continue
                interval = ci.get(metric)
                out.append(
                    {
                        "type": metric,
                        "value": values[metric],
                        "slice": slice_name,
                        "source": f"training run ({split})",
                        "n": values.get("n"),
                        "confidence_interval": None
                        if not interval
                        else {"lower_bound": interval[0], "upper_bound": interval[1]},
                    }
                )
    return out


def _limitations(record: dict, extra: list[str]) -> list[str]:
    out = list(extra)
    training = (record.get("metrics") or {}).get("training") or {}
    for split, coverage in (training.get("coverage") or {}).items():
        for entry in coverage.values():
            if "warning" in entry:
                out.append(f"{entry['warning']} ({split})")
    bundle_conditions = ((record.get("metrics") or {}).get("bundle") or {}).get(
        "by_condition"
    ) or {}
    if "unseen" in bundle_conditions:
        out.append("some evaluated windows fell in no known operating condition ('unseen')")
    gate = record.get("gate")
    if gate:
        for source, verdict in gate["sources"].items():
            for name, c in verdict["conditions"].items():
                if not c["passed"]:
                    out.append(
                        f"gate not passed in condition {name!r} ({source} metrics): {'; '.join(c['problems'])}"
                    )
    inp = record["bundle"]["input"]
    period = inp.get("sampling_period")
    unit = " s" if inp.get("time_kind") == "datetime" else " time units"
    out.append(
        f"the edge runtime expects rows every {period:g}{unit} and does not align or fill gaps; "
        f"a step over max_gap restarts the window"
        if period
        else "the edge runtime does not align multi-rate sensors or fill gaps"
    )
    out += list(((record.get("export") or {}).get("notes")) or [])
    return out


def model_card(
    version: dict[str, Any], intended_use: str | None = None, limitations: list[str] | None = None
) -> dict[str, Any]:
    """The card of ``version`` (:func:`plantml.registry.queries.version_dict` with the record)."""
    record = version["record"]
    b, lineage = record["bundle"], record.get("lineage") or {}
    task = b["task"]
    data = lineage.get("data") or {}
    use = (
        intended_use
        or record.get("intended_use")
        or (
            f"{task.get('description', task['kind'])} for assets sending "
            f"{', '.join(b['input']['feature_columns'])} in the operating conditions "
            f"{', '.join(b['conditions']['names'])}"
        )
    )
    training = (record.get("metrics") or {}).get("training") or {}
    wandb = record.get("wandb") or {}
    approvals = [r for r in version.get("reviews", [])]
    return {
        "model_details": {
            "name": version["model"],
            "overview": f"{task['kind']} model, bundle {b['name']} ({b['model'].get('variant', '?')})",
            "version": {
                "name": version["ref"],
                "date": version["registered_at"],
                "diff": f"parent {version.get('parent') or 'none'}",
            },
            "owners": [{"name": version["author"], "contact": ""}],
            "references": [
                {
                    "reference": f"wandb run {wandb.get('project')}/{wandb['run_id']} ({wandb.get('mode')})"
                }
            ]
            if wandb.get("run_id")
            else [],
            "path": f"sha256:{version['manifest_sha256']}",
            "lineage": {
                k: lineage.get(k)
                for k in (
                    "data_fingerprint",
                    "git",
                    "training_run",
                    "checkpoint_sha256",
                    "recipe",
                    "seed",
                )
            },
            "tags": version.get("tags", {}),
        },
        "model_parameters": {
            "model_architecture": lineage.get("model_config"),
            "input_format": f"window of {b['input']['window_length']} rows x {len(b['input']['feature_columns'])} features ({', '.join(b['input']['feature_columns'])}), stride {b['input']['stride']}",
            "output_format": f"{task['output_name']}"
            + (f" ({task['unit']})" if task.get("unit") else "")
            + (
                f"; alarm when {task.get('alarm_when')} {task['threshold']:g}"
                if task.get("threshold") is not None
                else ""
            ),
            "data": {
                "train": {
                    "name": lineage.get("training_run"),
                    "assets": data.get("assets"),
                    "rows": data.get("rows"),
                    "windows": data.get("train_windows"),
                    "conditions": data.get("conditions"),
                    "coverage": training.get("coverage"),
                    "fingerprint": lineage.get("data_fingerprint"),
                },
                "eval": {
                    "split": ((record.get("metrics") or {}).get("bundle") or {}).get("split"),
                    "windows": {k: v for k, v in data.items() if k.endswith("_windows")},
                },
            },
        },
        "quantitative_analysis": {
            "performance_metrics": _performance(record),
            "worst_condition": training.get("worst_condition"),
            "interval_method": INTERVAL_NOTE,
        },
        "considerations": {
            "users": ["plant reliability engineers", "operators of the monitored assets"],
            "use_cases": [use],
            "limitations": _limitations(
                record, list(limitations or record.get("limitations") or [])
            ),
            "tradeoffs": [
                f"{v['name']}: {_fmt((v.get('bytes') or 0) / 1024)} KB, p50 {_fmt(v.get('p50_ms'))} ms, {v.get('metric')} {_fmt(v.get('value'))}"
                for v in (record.get("export") or {}).get("variants", [])
            ],
            "ethical_considerations": [],
        },
        "gate": record.get("gate"),
        "export": record.get("export"),
        "approvals": approvals,
        "deployments": version.get("stages", []),
    }


def _table(rows: list[list[Any]], header: list[str]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    lines += ["| " + " | ".join(_fmt(c) for c in row) + " |" for row in rows]
    return lines


def card_markdown(card: dict[str, Any]) -> str:
    """The card as Markdown: details, intended use, data, metrics per condition, limits, approvals."""
    d, p, q, c = (
        card["model_details"],
        card["model_parameters"],
        card["quantitative_analysis"],
        card["considerations"],
    )
    lines = [f"# Model card: {d['version']['name']}", "", d["overview"], ""]
    lines += [
        f"- registered {d['version']['date']} by {', '.join(o['name'] for o in d['owners'])}; {d['version']['diff']}",
        f"- bundle {d['path']}",
        f"- lineage: data {d['lineage'].get('data_fingerprint')}, git {(d['lineage'].get('git') or {}).get('commit')}, run {d['lineage'].get('training_run')}, recipe {d['lineage'].get('recipe')}",
    ]
    lines += [f"- {r['reference']}" for r in d["references"]]
    lines += ["", "## Intended use", "", *[f"- {u}" for u in c["use_cases"]], ""]
    lines += [
        "## Inputs and output",
        "",
        f"- input: {p['input_format']}",
        f"- output: {p['output_format']}",
        "",
    ]
    train = p["data"]["train"]
    lines += [
        "## Training data",
        "",
        f"- run {train['name']}: {_fmt(train['assets'])} assets, {_fmt(train['rows'])} rows, {_fmt(train['windows'])} training windows",
        f"- conditions: {', '.join(train['conditions'] or []) or '–'}",
    ]
    for split, cov in (train.get("coverage") or {}).items():
        shares = ", ".join(f"{k} {v['train_share']:.0%}" for k, v in cov.items())
        lines.append(f"- training share of the conditions scored on {split}: {shares}")
    lines += ["", "## Evaluation per operating condition", ""]
    rows = [
        [
            m["source"],
            m["slice"],
            m["type"],
            m["value"],
            ""
            if not m["confidence_interval"]
            else f"[{m['confidence_interval']['lower_bound']:.4g}, {m['confidence_interval']['upper_bound']:.4g}]",
            m["n"],
        ]
        for m in q["performance_metrics"]
    ]
    lines += (
        _table(rows, ["source", "slice", "metric", "value", "95 % interval", "windows"])
        if rows
        else ["(no metrics recorded)"]
    )
    worst = q.get("worst_condition") or {}
    for split, w in worst.items():
        lines.append(
            f"\nWorst condition ({split}): {w['condition']} with {w['metric']} {w['value']:.4g} (overall {w['overall']:.4g}, gap {w['gap']:+.4g})."
        )
    gate = card.get("gate")
    lines += ["", "## Validation gate", ""]
    if gate is None:
        lines.append("No gate recorded: promotion that requires the gate is refused.")
    else:
        rules = "; ".join(
            f"{r['metric']} {r['scope']} [{_fmt(r['min'])}, {_fmt(r['max'])}]"
            for r in gate["rules"]
        )
        lines.append(f"Rules: {rules} (min {gate['min_samples']} windows)")
        for source, verdict in gate["sources"].items():
            cond = ", ".join(
                f"{k} {'pass' if v['passed'] else 'FAIL'}" for k, v in verdict["conditions"].items()
            )
            lines.append(
                f"- {source} ({verdict['split']}): {'PASSED' if verdict['passed'] else 'FAILED'}; per condition: {cond}"
            )
    lines += ["", "## Limitations", "", *[f"- {x}" for x in c["limitations"]], ""]
    export = card.get("export")
    if export:
        lines += ["## Export variants", ""]
        lines += _table(
            [
                [
                    v["name"],
                    v["format"],
                    (v.get("bytes") or 0) / 1024,
                    v.get("parameters"),
                    v.get("p50_ms"),
                    v.get("value"),
                ]
                for v in export["variants"]
            ],
            [
                "variant",
                "format",
                "KB",
                "parameters",
                "p50 ms",
                export.get("headline_metric") or "metric",
            ],
        )
        lines.append("")
    lines += ["## Approvals", ""]
    lines += [
        f"- {a['at']}: {a['reviewer']} {a['decision']}d"
        + (f": {a['comment']}" if a["comment"] else "")
        for a in card["approvals"]
    ] or ["- none yet"]
    lines += ["", "## Deployments", ""]
    lines += [
        f"- {s['target']}: {s['stage']} from {s['entered_at']}"
        + (f" to {s['left_at']}" if s["left_at"] else " (current)")
        for s in card["deployments"]
    ] or ["- none"]
    return "\n".join(lines) + "\n"
