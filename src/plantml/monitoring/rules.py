"""Alert rules: what to watch, how strongly, for how long; and the alert life cycle.

A rules file (YAML or JSON) holds ``{"rules": [rule, ...]}``; each rule::

    name: input_drift          # unique
    metric: input_drift        # see METRICS
    condition: "*"             # a condition name, "*" (each), or "all" (rows pooled)
    signal: "*"                # a feature, "multivariate", or "*"
    above: 0.25 | below: 0.5   # threshold rules: breach when the value is beyond it
    clear: 0.15                # hysteresis: resolve only once back past this (default: threshold)
    persistence: 2             # consecutive breaching checks before the alert opens
    clear_after: 2             # consecutive clear checks before it resolves
    severity: info | warning | critical
    # metric input_drift only (calibrated sequential test, plantml.monitoring.sequential):
    alpha: 0.05                # Benjamini-Hochberg level across the tests of one check
    horizon: 200               # checks over which in-control false alarms are bounded
    k: 0.5                     # CUSUM allowance (z units)
    view: conditions | pooled  # per condition (default) or all rows pooled (condition-blind)

One alert per (rule, condition, signal) at a time: while it is open, further
breaches update it but send nothing (deduplication); it resolves after
``clear_after`` clear checks (hysteresis). :class:`AlertBook` keeps that state
as plain data so ``plantml-monitor watch`` can resume it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from plantml.monitoring.errors import RuleError

SEVERITIES = ("info", "warning", "critical")
# metric -> what it measures, and on which keys
METRICS = {
    "input_drift": "calibrated sequential test of each condition x signal (CUSUM + BH)",
    "psi": "population stability index of a feature in a condition",
    "ks": "Kolmogorov-Smirnov distance of a feature in a condition",
    "wasserstein": "Wasserstein distance in reference stds",
    "mean_shift": "|mean shift| in reference stds",
    "missing_rate": "share of missing values of a feature in a condition",
    "unseen_fraction": "share of rows in conditions the bundle does not know",
    "mix_psi": "PSI of the condition mix against training (a note: the model knows these conditions)",
    "output_psi": "PSI of the model's outputs in a condition against validation",
    "output_mean_shift": "|mean shift| of the outputs in validation stds",
    "alarm_rate_ratio": "alarm rate over the validation alarm rate, per condition",
    "estimated_f1": "F1 expected from calibrated probabilities (no labels needed)",
    "estimated_precision": "precision expected from calibrated probabilities",
    "estimated_recall": "recall expected from calibrated probabilities",
    "precision": "precision once labels arrived",
    "recall": "recall once labels arrived",
    "f1": "F1 once labels arrived",
    "rmse": "RUL error once the assets failed",
}

DEFAULT_RULES: list[dict[str, Any]] = [
    {"name": "input_drift", "metric": "input_drift", "severity": "warning", "alpha": 0.05},
    {
        "name": "unseen_conditions",
        "metric": "unseen_fraction",
        "above": 0.02,
        "clear": 0.01,
        "persistence": 2,
        "severity": "warning",
    },
    {
        "name": "missing_values",
        "metric": "missing_rate",
        "above": 0.1,
        "clear": 0.05,
        "persistence": 2,
        "severity": "warning",
    },
    {"name": "condition_mix", "metric": "mix_psi", "above": 0.1, "clear": 0.05, "severity": "info"},
    {
        "name": "output_drift",
        "metric": "output_psi",
        "above": 0.25,
        "clear": 0.1,
        "persistence": 3,
        "severity": "warning",
    },
    {
        "name": "alarm_rate",
        "metric": "alarm_rate_ratio",
        "above": 3.0,
        "clear": 2.0,
        "persistence": 3,
        "severity": "warning",
    },
]


@dataclass(frozen=True)
class Rule:
    """One alert rule (fields: module docstring)."""

    name: str
    metric: str
    severity: str = "warning"
    condition: str = "*"
    signal: str = "*"
    above: float | None = None
    below: float | None = None
    clear: float | None = None
    persistence: int = 1
    clear_after: int = 1
    alpha: float = 0.05
    horizon: int = 200
    k: float = 0.5
    view: str = "conditions"

    @property
    def sequential(self) -> bool:
        return self.metric == "input_drift"

    def breached(self, value: float) -> bool:
        return (self.above is not None and value > self.above) or (
            self.below is not None and value < self.below
        )

    def cleared(self, value: float) -> bool:
        """Back past the clear level (hysteresis); a threshold rule's default is the threshold."""
        if self.above is not None:
            return value <= (self.clear if self.clear is not None else self.above)
        return value >= (self.clear if self.clear is not None else self.below)

    def applies(self, condition: str, signal: str) -> bool:
        return self.condition in ("*", condition) and self.signal in ("*", signal)


def parse_rule(d: Mapping[str, Any], where: str = "rule") -> Rule:
    """A :class:`Rule` from a mapping, with every mistake named."""
    if not isinstance(d, Mapping):
        raise RuleError(f"{where} must be a mapping with name and metric, got {d!r}")
    known = set(Rule.__dataclass_fields__)
    unknown = sorted(set(d) - known)
    if unknown:
        raise RuleError(
            f"{where}: unknown key(s) {unknown}; valid keys: {', '.join(sorted(known))}"
        )
    for key in ("name", "metric"):
        if not d.get(key):
            raise RuleError(f"{where}: '{key}' is required")
    name = f"rule {d['name']!r}"
    if d["metric"] not in METRICS:
        raise RuleError(f"{name}: unknown metric {d['metric']!r}; use one of {', '.join(METRICS)}")
    if d.get("severity", "warning") not in SEVERITIES:
        raise RuleError(f"{name}: severity must be one of {', '.join(SEVERITIES)}")
    try:
        rule = Rule(**{k: v for k, v in d.items()})
        for key in ("above", "below", "clear", "alpha", "k"):
            value = getattr(rule, key)
            if value is not None and not isinstance(value, int | float):
                raise TypeError(f"{key} must be a number, got {value!r}")
        for key in ("persistence", "clear_after", "horizon"):
            if not isinstance(getattr(rule, key), int) or getattr(rule, key) < 1:
                raise TypeError(f"{key} must be an integer >= 1, got {getattr(rule, key)!r}")
    except TypeError as exc:
        raise RuleError(f"{name}: {exc}") from None
    if rule.sequential:
        if not 0 < rule.alpha < 1:
            raise RuleError(f"{name}: alpha must be between 0 and 1, got {rule.alpha}")
        if rule.view not in ("conditions", "pooled"):
            raise RuleError(f"{name}: view must be conditions or pooled, got {rule.view!r}")
    elif (rule.above is None) == (rule.below is None):
        raise RuleError(f"{name}: give exactly one of above or below (the threshold)")
    return rule


def load_rules(source: str | Path | list | None = None) -> list[Rule]:
    """Rules from a YAML/JSON file, a list of mappings, or the defaults (None)."""
    if source is None:
        items: Any = DEFAULT_RULES
        where = "default rules"
    elif isinstance(source, list):
        items, where = source, "rules"
    else:
        path = Path(source)
        if not path.is_file():
            raise RuleError(f"rules file {path} not found; pass a YAML or JSON file with 'rules:'")
        text = path.read_text(encoding="utf-8")
        try:
            if path.suffix.lower() == ".json":
                loaded = json.loads(text)
            else:
                import yaml

                loaded = yaml.safe_load(text)
        except Exception as exc:  # yaml and json raise their own error types
            raise RuleError(f"rules file {path} cannot be parsed ({exc})") from None
        items = loaded.get("rules") if isinstance(loaded, Mapping) else loaded
        where = str(path)
        if not isinstance(items, list):
            raise RuleError(f"{path}: expected a list under 'rules:'")
    rules = [parse_rule(d, f"{where} item {i + 1}") for i, d in enumerate(items)]
    names = [r.name for r in rules]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise RuleError(f"{where}: rule names must be unique; repeated: {dup}")
    return rules


@dataclass
class Finding:
    """One rule's verdict on one key at one check."""

    rule: str
    condition: str
    signal: str
    value: float
    breached: bool
    details: dict[str, Any] = field(default_factory=dict)
    since: Any = None  # where the evidence started (sequential tests); else the first breach

    @property
    def key(self) -> str:
        return f"{self.rule}|{self.condition}|{self.signal}"


@dataclass
class AlertState:
    breaches: int = 0
    clears: int = 0
    first_breach: Any = None
    alert: dict[str, Any] | None = None


class AlertBook:
    """Persistence, hysteresis and deduplication of alerts across checks."""

    def __init__(self, rules: list[Rule], state: Mapping[str, Any] | None = None):
        self.rules = {r.name: r for r in rules}
        self.states: dict[str, AlertState] = {
            key: AlertState(**value) for key, value in (state or {}).items()
        }
        self.counter = max((int(s.alert["id"]) for s in self.states.values() if s.alert), default=0)

    def apply(self, findings: list[Finding], time: Any, report: str | None) -> dict[str, list]:
        """Update the book with one check's findings; returns ``opened``, ``resolved``, ``open``."""
        opened, resolved = [], []
        seen = set()
        for f in findings:
            rule = self.rules[f.rule]
            state = self.states.setdefault(f.key, AlertState())
            seen.add(f.key)
            if f.breached:
                state.breaches += 1
                state.clears = 0
                if state.first_breach is None:
                    state.first_breach = f.since if f.since is not None else time
                if state.alert is None and state.breaches >= rule.persistence:
                    self.counter += 1
                    state.alert = self._alert(rule, f, state, time, report)
                    opened.append(state.alert)
                elif state.alert is not None:  # deduplicated: update, do not resend
                    state.alert.update(value=f.value, last=time, details=f.details, report=report)
            else:
                state.breaches = 0
                if state.alert is None:
                    state.first_breach = None
                    continue
                back = f.details.get("s", 0.0) == 0.0 if rule.sequential else rule.cleared(f.value)
                state.clears = state.clears + 1 if back else 0
                if state.clears >= rule.clear_after:
                    alert = dict(state.alert, status="resolved", resolved=time, report=report)
                    resolved.append(alert)
                    self.states[f.key] = AlertState()
        return {"opened": opened, "resolved": resolved, "open": self.open_alerts()}

    def _alert(self, rule: Rule, f: Finding, state: AlertState, time: Any, report) -> dict:
        return {
            "id": self.counter,
            "rule": rule.name,
            "metric": rule.metric,
            "severity": rule.severity,
            "condition": f.condition,
            "signal": f.signal,
            "status": "open",
            "since": state.first_breach,
            "opened": time,
            "last": time,
            "value": f.value,
            "threshold": rule.above if rule.above is not None else rule.below,
            "details": f.details,
            "report": report,
        }

    def open_alerts(self) -> list[dict[str, Any]]:
        return [s.alert for s in self.states.values() if s.alert is not None]

    def state(self) -> dict[str, Any]:
        return {key: asdict(s) for key, s in self.states.items() if s.breaches or s.alert}
