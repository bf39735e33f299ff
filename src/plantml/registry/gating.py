"""The validation gate per operating condition, checked again on what the registry holds.

A run's gate (``gate=...`` in training, :mod:`plantml.evaluation.gate`) is recorded as rules;
at registration the registry checks those rules on each metrics source it has (the bundle's
own metrics: the exported variant that devices will run; and the training run's
``metrics.json``), once per operating condition. A condition *passed* when every check that
applies to it (the overall ones and its own) passed; not assessable is not passed. Promotion
to a target then requires a pass in every condition the target declares, in every source.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from plantml.errors import ConfigError
from plantml.evaluation.gate import check_gate, load_gate


def metrics_layout(split: str, overall: Mapping, by_condition: Mapping) -> dict[str, Any]:
    """Bundle-style metrics (``{"overall", "by_condition"}``) in the metrics.json layout."""
    flat: dict[str, Any] = {
        f"{split}/{k}": v for k, v in overall.items() if isinstance(v, int | float) or v is None
    }
    flat["by_condition"] = {split: dict(by_condition)}
    return flat


def _source(rules, min_samples, min_assets, split: str, layout: Mapping) -> dict[str, Any]:
    whole = check_gate(layout, split, rules, min_samples, min_assets)
    conditions = {}
    for name, values in ((layout.get("by_condition") or {}).get(split) or {}).items():
        one = {k: v for k, v in layout.items() if k != "by_condition"}
        one["by_condition"] = {split: {name: values}}
        result = check_gate(one, split, rules, min_samples, min_assets)
        bad = [c for c in result.checks if c["status"] != "pass"]
        conditions[name] = {
            "passed": bool(result.passed and not bad),
            "problems": [
                f"{c['rule']} {c['scope'].replace('_', ' ')}: "
                + ("null" if c["value"] is None else f"{c['value']:.4g}")
                + f" ({c['reason']})"
                for c in bad
            ],
        }
    return {
        "split": split,
        "passed": whole.passed,
        "summary": whole.summary_lines(),
        "conditions": conditions,
    }


def evaluate_gate(
    gate_cfg: Mapping | None, sources: Mapping[str, tuple[str, Mapping]]
) -> dict[str, Any] | None:
    """The gate's verdict per source and condition; None when there are no rules.

    ``sources``: name -> (split, metrics in the metrics.json layout). A source that lacks a
    metric the rules need is listed under ``skipped`` with the reason.
    """
    rules, min_samples, min_assets = load_gate(dict(gate_cfg) if gate_cfg else None)
    if not rules:
        return None
    out: dict[str, Any] = {
        "rules": [vars(r) for r in rules],
        "min_samples": min_samples,
        "min_assets": min_assets,
        "sources": {},
        "skipped": {},
    }
    for name, (split, layout) in sources.items():
        try:
            out["sources"][name] = _source(rules, min_samples, min_assets, split, layout)
        except ConfigError as exc:
            out["skipped"][name] = str(exc)
    return out


def gate_problems(gate: Mapping | None, conditions: list[str]) -> list[str]:
    """Why the gate does not allow ``conditions`` (empty when it passed in every one)."""
    if gate is None:
        return [
            "no validation gate result is recorded for this version: train (or evaluate) with "
            "gate=<rules> and export again"
        ]
    if not gate.get("sources"):
        skipped = "; ".join(f"{k}: {v}" for k, v in (gate.get("skipped") or {}).items())
        return [f"the gate could not be checked on any metrics ({skipped})"]
    problems = []
    for name, source in gate["sources"].items():
        for condition in conditions:
            verdict = source["conditions"].get(condition)
            if verdict is None:
                evaluated = ", ".join(sorted(source["conditions"])) or "none"
                problems.append(
                    f"condition {condition!r} was not evaluated in the {name} metrics "
                    f"({source['split']}; evaluated: {evaluated})"
                )
            elif not verdict["passed"]:
                problems.append(
                    f"gate failed in condition {condition!r} ({name} metrics, {source['split']}): "
                    + "; ".join(verdict["problems"])
                )
    return problems
