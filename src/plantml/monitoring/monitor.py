"""One check of production data: drift, calibrated tests, rules, alerts, and a verdict.

:class:`Monitor` holds what persists between checks (the CUSUM states of each
sequential rule and the alert book) and turns one chunk's sketch, plus any
performance figures, into a JSON-ready check result. The verdict tells the
three situations apart:

- **input drift**: the inputs of a known condition moved (calibrated test rejects);
- **condition-mix shift**: the shares of the known conditions changed, but
  within each condition the inputs look like training (the model knows these
  conditions: a note, not an input-drift alert);
- **unseen conditions**: rows in conditions the bundle does not know.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from scipy.stats import chi2

from plantml.monitoring.drift import ChunkDrift, chunk_drift
from plantml.monitoring.null import MIN_ROWS, null_scores
from plantml.monitoring.profile import ReferenceProfile, round_floats
from plantml.monitoring.rules import AlertBook, Finding, Rule
from plantml.monitoring.sequential import SequentialTest
from plantml.monitoring.sketch import ProfileSketch

PER_FEATURE = ("psi", "ks", "wasserstein", "mean_shift", "missing_rate")
ABSOLUTE = ("mean_shift", "output_mean_shift")
MIX_NOTE = 0.1
UNSEEN_NOTE = 0.02


def _num(value: Any) -> float | None:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    return v if np.isfinite(v) else None


class Monitor:
    """Checks chunks against a profile with a set of rules; ``state()`` resumes it later."""

    def __init__(
        self,
        profile: ReferenceProfile,
        rules: list[Rule],
        state: Mapping[str, Any] | None = None,
    ):
        self.profile = profile
        self.rules = rules
        state = state or {}
        self.tests = {
            r.name: SequentialTest.from_dict(state["tests"][r.name])
            if r.name in state.get("tests", {})
            else SequentialTest(r.k, r.horizon, r.alpha)
            for r in rules
            if r.sequential
        }
        self.book = AlertBook(rules, state.get("alerts"))
        if any(r.sequential for r in rules) and profile.null is None:
            from plantml.monitoring.errors import ProfileError

            raise ProfileError(
                "the bundle's reference profile has no null model (no validation split at "
                "export), so input_drift cannot be calibrated; re-export with a validation split "
                "or use threshold rules (psi, wasserstein) only"
            )

    def state(self) -> dict[str, Any]:
        return {
            "tests": {name: t.to_dict() for name, t in self.tests.items()},
            "alerts": self.book.state(),
        }

    # --- findings per rule -----------------------------------------------------------------------

    def _blocks(self, rule: Rule) -> list[int]:
        k = self.profile.n_conditions
        if rule.condition == "all" or rule.view == "pooled":
            return [k + 1]
        if rule.condition == "*":
            return list(range(k))
        if rule.condition not in self.profile.conditions:
            return []
        return [self.profile.conditions.index(rule.condition)]

    def _sequential(self, rule: Rule, drift: ChunkDrift, z: np.ndarray, time: Any) -> list[Finding]:
        keys, values = {}, {}
        for b in self._blocks(rule):
            for j, signal in enumerate(drift.signals):
                if rule.signal in ("*", signal):
                    key = f"{drift.blocks[b]}|{signal}"
                    keys[key] = (b, j)
                    values[key] = z[b, j]
        result = self.tests[rule.name].update(values, time)
        findings = []
        for key, (b, j) in keys.items():
            r = result[key]
            if r.get("z") is None:
                continue
            details = {
                "z": r["z"],
                "s": r["s"],
                "p": r["p"],
                "rows": int(drift.n[b, j]),
                **{
                    m: _num(drift.input[m][b, j])
                    for m in ("mean_shift", "wasserstein", "psi", "ks")
                },
            }
            findings.append(
                Finding(
                    rule.name,
                    drift.blocks[b],
                    drift.signals[j],
                    r["s"],
                    r["reject"],
                    details,
                    r["since"],
                )
            )
        return findings

    def _per_feature(self, rule: Rule, drift: ChunkDrift) -> list[Finding]:
        findings = []
        for b in self._blocks(rule):
            for j, signal in enumerate(drift.signals):
                if rule.signal not in ("*", signal) or drift.n[b, j] < MIN_ROWS:
                    continue
                value = drift.input[rule.metric][b, j]
                if not np.isfinite(value):
                    continue
                value = abs(value) if rule.metric in ABSOLUTE else float(value)
                details = {m: _num(drift.input[m][b, j]) for m in PER_FEATURE}
                details["rows"] = int(drift.n[b, j])
                findings.append(
                    Finding(
                        rule.name, drift.blocks[b], signal, value, rule.breached(value), details
                    )
                )
        return findings

    def _outputs(self, rule: Rule, drift: ChunkDrift) -> list[Finding]:
        out = drift.output
        if not out.get("reference"):
            return []
        name = self.profile.output.name
        findings = []
        for b in self._blocks(rule):
            if out["n"][b] < MIN_ROWS:
                continue
            if rule.metric == "alarm_rate_ratio":
                if "alarm_rate" not in out:
                    continue
                ref = out["reference_alarm_rate"][b]
                value = out["alarm_rate"][b] / max(ref, 1.0 / max(int(out["n"][b]), 1))
            else:
                value = out[rule.metric.removeprefix("output_")][b]
            if not np.isfinite(value):
                continue
            value = abs(float(value)) if rule.metric in ABSOLUTE else float(value)
            details = {
                "predictions": int(out["n"][b]),
                "psi": _num(out["psi"][b]),
                "mean": _num(out["mean"][b]),
                "reference_mean": _num(out["reference_mean"][b]),
                "alarm_rate": _num(out["alarm_rate"][b]) if "alarm_rate" in out else None,
                "reference_alarm_rate": _num(out["reference_alarm_rate"][b])
                if "alarm_rate" in out
                else None,
            }
            findings.append(
                Finding(rule.name, drift.blocks[b], name, value, rule.breached(value), details)
            )
        return findings

    def _chunk_level(
        self, rule: Rule, drift: ChunkDrift, figures: Mapping[str, Any]
    ) -> list[Finding]:
        mix = drift.mix
        if rule.metric == "unseen_fraction":
            value, details = mix["unseen_fraction"], {"unseen_rows": mix["unseen_rows"]}
        elif rule.metric == "mix_psi":
            value = mix["psi"]
            details = {
                "chi2": mix["chi2"],
                "p": _num(chi2.sf(mix["chi2"], mix["dof"])) if mix["dof"] else None,
                "current_shares": round_floats(mix["current_shares"]),
                "reference_shares": round_floats(mix["reference_shares"]),
            }
        else:
            value, details = figures.get(rule.metric), {"figures": dict(figures)}
        value = _num(value)
        if value is None:
            return []
        return [Finding(rule.name, "*", "*", value, rule.breached(value), details)]

    # --- one check -------------------------------------------------------------------------------

    def check(
        self,
        time: Any,
        sketch: ProfileSketch,
        figures: Mapping[str, Any] | None = None,
        report: str | None = None,
        start: Any = None,
    ) -> dict[str, Any]:
        """Check one chunk: its sketch, and ``figures`` (estimated_f1, recall, ...) if known.

        Returns a JSON-ready dict: ``time``, ``start``, ``rows``, ``drift``, ``z``,
        ``findings`` (the breaching ones), ``verdict`` and ``alerts`` (opened,
        resolved, open).
        """
        drift = chunk_drift(self.profile, sketch)
        z = None
        if self.profile.null is not None:
            z = null_scores(self.profile, drift.input["wasserstein"], drift.n, whiten=True)
        findings: list[Finding] = []
        for rule in self.rules:
            if rule.sequential:
                findings += self._sequential(rule, drift, z, time)
            elif rule.metric in PER_FEATURE:
                findings += self._per_feature(rule, drift)
            elif rule.metric.startswith(("output_", "alarm_rate")):
                findings += self._outputs(rule, drift)
            else:
                findings += self._chunk_level(rule, drift, figures or {})
        alerts = self.book.apply(findings, time, report)
        return {
            "time": time,
            "start": start,
            "rows": int(sketch.n_rows),
            "drift": drift.to_dict(),
            "z": None if z is None else round_floats(z),
            "findings": [f.__dict__ | {"key": f.key} for f in findings if f.breached],
            "verdict": self.verdict(drift, findings),
            "figures": dict(figures or {}),
            "alerts": alerts,
        }

    def verdict(self, drift: ChunkDrift, findings: list[Finding]) -> dict[str, Any]:
        """Which of input drift, condition-mix shift and unseen conditions this chunk shows."""
        per_condition = {r.name for r in self.rules if r.sequential and r.view == "conditions"}
        drifting = sorted(
            {(f.condition, f.signal) for f in findings if f.rule in per_condition and f.breached}
        )
        mix_rule = next((r for r in self.rules if r.metric == "mix_psi"), None)
        unseen_rule = next((r for r in self.rules if r.metric == "unseen_fraction"), None)
        mix_psi = drift.mix["psi"]
        unseen = drift.mix["unseen_fraction"]
        mix_shift = mix_psi > (mix_rule.above if mix_rule else MIX_NOTE)
        unseen_hit = bool(
            np.nan_to_num(unseen) > (unseen_rule.above if unseen_rule else UNSEEN_NOTE)
        )
        parts = []
        if drifting:
            where: dict[str, list[str]] = {}
            for c, s in drifting:
                where.setdefault(c, []).append(s)
            parts.append(
                "input drift within "
                + "; ".join(f"condition {c!r} ({', '.join(s)})" for c, s in where.items())
            )
        if unseen_hit:
            parts.append(f"{unseen:.1%} of rows in conditions the model was not trained on")
        if mix_shift:
            note = f"condition-mix shift (PSI {mix_psi:.2f})"
            if not drifting:
                note += ": the shares of known conditions changed, but within each condition the inputs match training"
            parts.append(note)
        return {
            "input_drift": [{"condition": c, "signal": s} for c, s in drifting],
            "mix_shift": bool(mix_shift),
            "mix_psi": _num(mix_psi),
            "unseen": unseen_hit,
            "unseen_fraction": _num(unseen),
            "summary": "; ".join(parts) if parts else "no drift",
        }
