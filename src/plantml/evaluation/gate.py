"""Validation gate: pass/fail rules on ``metrics.json``, overall and per operating condition.

A rule bounds one metric (``min`` and/or ``max``, both inclusive) in one scope:

* ``overall``: ``metrics[f"{split}/{metric}"]``;
* ``every_condition``: one check per condition in ``metrics["by_condition"][split]``;
* ``worst_condition``: one check on the worst assessable condition (the highest value for
  error-like metrics, the highest ``|bias|`` for bias, the lowest value otherwise).

A value is *not assessable* when it is null/NaN or rests on fewer than ``min_samples`` windows
(``n``; overall, ``{split}/n``) or, for a condition, fewer than ``min_assets`` distinct assets
(``assets``; a condition without that count is not assessable when ``min_assets > 1``).
Not assessable is never a pass.

The gate passes when no check failed and at least one check was assessable; when every check
is not assessable it fails with "nothing could be assessed". No rules at all means no gate.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from plantml.errors import ConfigError, did_you_mean
from plantml.evaluation.names import (
    ANOMALY_METRICS,
    CLASS_METRICS,
    FAILURE_METRICS,
    HIGHER_IS_WORSE,
    RUL_METRICS,
)

SCOPES = ("overall", "every_condition", "worst_condition")
# bias is judged by |bias|
COUNT_KEYS = {"n", "assets"}


def _number(value: Any, what: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"{what} must be a number, got {value!r}")
    return float(value)


def _count(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigError(f"{what} must be a whole number >= 0, got {value!r}")
    return value


@dataclass
class Rule:
    """``metric`` within ``[min, max]`` (either may be None, not both) in ``scope``."""

    metric: str
    min: float | None = None
    max: float | None = None
    scope: str = "overall"

    def __post_init__(self) -> None:
        known = RUL_METRICS + FAILURE_METRICS + ANOMALY_METRICS + CLASS_METRICS
        if self.metric not in known:
            raise ConfigError(
                f"gate rule: unknown metric {self.metric!r}; "
                f"{did_you_mean(str(self.metric), known)}"
                f" (valid: {', '.join(known)})"
            )
        if self.scope not in SCOPES:
            raise ConfigError(
                f"gate rule on {self.metric}: unknown scope {self.scope!r}; "
                f"valid scopes: {', '.join(SCOPES)}"
            )
        self.min = _number(self.min, f"gate rule on {self.metric}: min")
        self.max = _number(self.max, f"gate rule on {self.metric}: max")
        if self.min is None and self.max is None:
            raise ConfigError(f"gate rule on {self.metric}: give min, max or both")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ConfigError(f"gate rule on {self.metric}: min {self.min:g} > max {self.max:g}")

    @classmethod
    def from_mapping(cls, raw: Mapping) -> Rule:
        """A rule from ``{metric: rmse, max: 15, scope: overall}``; unknown keys are errors."""
        extra = sorted(set(raw) - {"metric", "min", "max", "scope"})
        if extra or "metric" not in raw:
            raise ConfigError(
                f"gate rule {dict(raw)!r}: needs 'metric'; allowed keys are metric, min, max, "
                f"scope" + (f" (unknown: {', '.join(map(str, extra))})" if extra else "")
            )
        return cls(**{str(k): v for k, v in raw.items()})

    def text(self) -> str:
        """``recall >= 0.8``, ``rmse <= 15`` or ``-5 <= bias <= 5``."""
        if self.min is not None and self.max is not None:
            return f"{self.min:g} <= {self.metric} <= {self.max:g}"
        if self.min is not None:
            return f"{self.metric} >= {self.min:g}"
        return f"{self.metric} <= {self.max:g}"

    def holds(self, value: float) -> bool:
        """Whether ``value`` is within the bounds (inclusive)."""
        return (self.min is None or value >= self.min) and (self.max is None or value <= self.max)


@dataclass
class GateResult:
    """Outcome of :func:`check_gate`: ``passed`` and one dict per check."""

    passed: bool
    checks: list[dict] = field(default_factory=list)
    split: str = ""
    reason: str = ""

    def summary_lines(self) -> list[str]:
        """A headline, then one readable line per check (NOT ASSESSABLE ones with their reason)."""
        counts = {s: sum(c["status"] == s for c in self.checks) for s in ("pass", "fail")}
        n_na = len(self.checks) - counts["pass"] - counts["fail"]
        head = f"Gate {'PASSED' if self.passed else 'FAILED'} on {self.split!r}: {self.reason}"
        lines = [
            f"{head} ({counts['pass']} passed, {counts['fail']} failed, {n_na} not assessable)"
        ]
        for c in self.checks:
            tag = {"pass": "PASS", "fail": "FAIL"}.get(c["status"], "NOT ASSESSABLE")
            where = {"overall": "overall", "every_condition": "in condition"}.get(
                c["scope"], "in worst condition"
            ) + ("" if c["condition"] is None else f" {c['condition']!r}")
            value = "null" if c["value"] is None else f"{c['value']:.4g}"
            sizes = [f"{c['n']} windows"] if c.get("n") is not None else []
            if c.get("assets") is not None:
                sizes.append(f"{c['assets']} asset{'s' if c['assets'] != 1 else ''}")
            line = f"{tag} {c['rule']} {where}: {value}" + (f" ({', '.join(sizes)})" * bool(sizes))
            if c["status"] == "not_assessable" or c["scope"] == "worst_condition":
                line += f" - {c['reason']}"
            lines.append(line)
        return lines

    def to_dict(self) -> dict:
        """Plain JSON-ready dict."""
        return asdict(self)


def _why_not(value: Any, n: Any, assets: Any, min_samples: int, min_assets: int) -> str | None:
    """Why a value cannot be assessed, or None if it can."""
    if n is None and min_samples > 0:
        return "window count unknown"
    if n is not None and n < min_samples:
        return f"only {n} windows, need at least {min_samples}"
    if assets is None and min_assets > 1:
        return "asset count unknown"
    if assets is not None and assets < min_assets:
        return f"only {assets} asset{'s' if assets != 1 else ''}, need at least {min_assets}"
    if value is None or not isinstance(value, int | float) or not math.isfinite(value):
        return "value is undefined (null)"
    return None


def _check(rule: Rule, condition: str | None, value: Any, n: Any, assets: Any, why: str | None):
    status = "not_assessable" if why else ("pass" if rule.holds(value) else "fail")
    reason = why or ("within bounds" if status == "pass" else f"outside {rule.text()}")
    return {"rule": rule.text(), "scope": rule.scope, "condition": condition, "value": value,
            "status": status, "reason": reason, "n": n, "assets": assets}  # fmt: skip


def check_gate(
    metrics: Mapping,
    split: str,
    rules: list[Rule | Mapping],
    min_samples: int = 30,
    min_assets: int = 1,
) -> GateResult:
    """Check ``rules`` against ``metrics`` (the metrics.json layout) for ``split``.

    Raises ConfigError for a bad rule or a metric/split that ``metrics`` does not have.
    """
    rules = [r if isinstance(r, Rule) else Rule.from_mapping(r) for r in rules]
    min_samples, min_assets = _count(min_samples, "min_samples"), _count(min_assets, "min_assets")
    if not rules:
        return GateResult(True, [], split, "no rules (no gate)")
    conditions = (metrics.get("by_condition") or {}).get(split) or {}
    flat = {k.split("/", 1)[1] for k in metrics if k.startswith(f"{split}/")}
    if not flat and not conditions:
        splits = sorted({k.split("/", 1)[0] for k in metrics if "/" in k})
        raise ConfigError(f"gate: no metrics for split {split!r}; splits present: {splits}")
    available = sorted((flat | {k for c in conditions.values() for k in c}) - COUNT_KEYS)
    checks: list[dict] = []
    for rule in rules:
        if rule.metric not in available or (rule.scope == "overall" and rule.metric not in flat):
            raise ConfigError(
                f"gate: no metric {rule.metric!r} for split {split!r} (wrong task?); "
                f"metrics present: {', '.join(available)}"
            )
        if rule.scope == "overall":
            value, n = metrics[f"{split}/{rule.metric}"], metrics.get(f"{split}/n")
            checks.append(
                _check(rule, None, value, n, None, _why_not(value, n, None, min_samples, 0))
            )
            continue
        if not conditions:
            why = f"no per-condition metrics for split {split!r}"
            checks.append(_check(rule, None, None, None, None, why))
            continue
        rows = [
            (name, c.get(rule.metric), c.get("n"), c.get("assets"))
            for name, c in conditions.items()
        ]
        whys = [_why_not(v, n, a, min_samples, min_assets) for _, v, n, a in rows]
        if rule.scope == "every_condition":
            checks.extend(_check(rule, *row, why) for row, why in zip(rows, whys, strict=True))
            continue
        ok = [row for row, why in zip(rows, whys, strict=True) if why is None]
        skipped = ", ".join(repr(r[0]) for r, why in zip(rows, whys, strict=True) if why)
        note = f"; not assessable: {skipped}" if skipped else ""
        if not ok:
            checks.append(_check(rule, None, None, None, None, f"no assessable condition{note}"))
            continue
        worse = rule.metric in HIGHER_IS_WORSE or rule.metric == "bias"
        size = abs if rule.metric == "bias" else float
        worst = (max if worse else min)(ok, key=lambda row: size(row[1]))
        checks.append(_check(rule, *worst, None))
        checks[-1]["reason"] += f"; worst of {len(ok)} assessable{note}"
    if any(c["status"] == "fail" for c in checks):
        return GateResult(False, checks, split, "a check failed")
    if all(c["status"] == "not_assessable" for c in checks):
        return GateResult(False, checks, split, "nothing could be assessed")
    return GateResult(True, checks, split, "no check failed")


def load_gate(cfg: Mapping | None) -> tuple[list[Rule], int, int]:
    """``{rules: [...], min_samples: 30, min_assets: 1}`` → (rules, min_samples, min_assets)."""
    cfg = cfg or {}
    extra = sorted(set(cfg) - {"rules", "min_samples", "min_assets"})
    if extra:
        raise ConfigError(
            f"gate config: unknown key(s) {', '.join(map(str, extra))}; "
            "allowed: rules, min_samples, min_assets"
        )
    raw = cfg.get("rules") or []
    if isinstance(raw, str | Mapping) or not all(isinstance(r, Mapping) for r in raw):
        raise ConfigError("gate config: rules must be a list of {metric, min/max, scope} mappings")
    return (
        [Rule.from_mapping(r) for r in raw],
        _count(cfg.get("min_samples", 30), "gate config: min_samples"),
        _count(cfg.get("min_assets", 1), "gate config: min_assets"),
    )
