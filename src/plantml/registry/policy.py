"""Promotion policy: who may do what, and what entering each stage at a target requires.

Read from a TOML file (``HOME/policy.toml`` by default; ``--policy`` / ``PLANTML_REGISTRY_POLICY``)
and enforced by :class:`plantml.registry.service.Registry`, so the CLI, the HTTP API and the
review page apply the same rules. TOML because Python reads it without another dependency;
the file is small and flat. Every key is optional (defaults below)::

    [roles]                      # which roles may do each action
    register = ["developer", "admin"]
    review   = ["reviewer"]      # approve / reject
    promote  = ["operator", "admin"]
    outcomes = ["operator", "admin"]      # record shadow / canary outcomes
    targets  = ["operator", "admin"]      # declare targets and their conditions
    users    = ["admin"]                  # users, roles, tokens of others
    keys     = ["admin"]                  # signing-key rotation
    report   = ["device", "operator", "admin"]   # device status reports
    read     = ["developer", "reviewer", "operator", "admin", "device"]

    [stages.production]          # what entering 'production' at a target needs
    gate = true                  # gate passed on every condition the target runs
    min_hours_in_previous = 72   # hours the version spent in the previous stage at this target
    outcome_required = true      # a passed outcome recorded for that previous stage there
    approvals = 2                # reviewers (not the author) whose latest decision is approve

    [transitions]
    allow_skip = false           # candidate -> production in one step

    [tokens]
    max_days = 90                # longest token lifetime that may be issued
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from plantml.registry.errors import RegistryError

POLICY_ENV = "PLANTML_REGISTRY_POLICY"
ROLES = ("developer", "reviewer", "operator", "admin", "device")
STAGES = ("candidate", "shadow", "canary", "production", "archived")
ACTIVE_STAGES = ("shadow", "canary", "production")
DEFAULT_ROLES = {
    "register": ["developer", "admin"],
    "review": ["reviewer"],
    "promote": ["operator", "admin"],
    "outcomes": ["operator", "admin"],
    "targets": ["operator", "admin"],
    "users": ["admin"],
    "keys": ["admin"],
    "report": ["device", "operator", "admin"],
    "read": ["developer", "reviewer", "operator", "admin", "device"],
}
DEFAULT_STAGES = {
    "shadow": {
        "gate": True,
        "min_hours_in_previous": 0.0,
        "outcome_required": False,
        "approvals": 0,
    },
    "canary": {
        "gate": True,
        "min_hours_in_previous": 24.0,
        "outcome_required": True,
        "approvals": 0,
    },
    "production": {
        "gate": True,
        "min_hours_in_previous": 72.0,
        "outcome_required": True,
        "approvals": 2,
    },
}
STAGE_KEYS = {"gate", "min_hours_in_previous", "outcome_required", "approvals"}


@dataclass(frozen=True)
class StageRule:
    """What entering one stage at a target requires."""

    gate: bool = True
    min_hours_in_previous: float = 0.0
    outcome_required: bool = False
    approvals: int = 0


@dataclass(frozen=True)
class Policy:
    """The whole promotion policy (see the module docstring for the file format)."""

    roles: dict[str, list[str]] = field(default_factory=lambda: dict(DEFAULT_ROLES))
    stages: dict[str, StageRule] = field(
        default_factory=lambda: {s: StageRule(**r) for s, r in DEFAULT_STAGES.items()}
    )
    allow_skip: bool = False
    token_max_days: float = 90.0
    source: str = "defaults"

    def may(self, action: str, roles: set[str]) -> bool:
        """Whether a user with ``roles`` may do ``action``."""
        return bool(set(self.roles[action]) & roles)

    def to_dict(self) -> dict[str, Any]:
        return {
            "roles": self.roles,
            "stages": {s: vars(r) for s, r in self.stages.items()},
            "allow_skip": self.allow_skip,
            "token_max_days": self.token_max_days,
            "source": self.source,
        }


def _fail(source: str, problem: str) -> RegistryError:
    return RegistryError(f"policy {source}: {problem}")


def _roles(raw: Any, source: str) -> dict[str, list[str]]:
    roles = dict(DEFAULT_ROLES)
    if not isinstance(raw, dict):
        raise _fail(source, "[roles] must be a table of action = [role, ...]")
    for action, value in raw.items():
        if action not in DEFAULT_ROLES:
            raise _fail(
                source,
                f"[roles] names unknown action {action!r}; actions: {', '.join(DEFAULT_ROLES)}",
            )
        if not isinstance(value, list) or not all(v in ROLES for v in value):
            raise _fail(
                source,
                f"roles.{action} must be a list of roles from {', '.join(ROLES)}, got {value!r}",
            )
        roles[action] = list(value)
    return roles


def _stage(name: str, raw: Any, source: str) -> StageRule:
    if name not in ACTIVE_STAGES:
        raise _fail(source, f"[stages.{name}]: rules exist for {', '.join(ACTIVE_STAGES)} only")
    if not isinstance(raw, dict) or set(raw) - STAGE_KEYS:
        extra = sorted(set(raw) - STAGE_KEYS) if isinstance(raw, dict) else raw
        raise _fail(
            source,
            f"[stages.{name}] has unknown key(s) {extra}; keys: {', '.join(sorted(STAGE_KEYS))}",
        )
    merged = {**DEFAULT_STAGES[name], **raw}
    for key in ("gate", "outcome_required"):
        if not isinstance(merged[key], bool):
            raise _fail(source, f"stages.{name}.{key} must be true or false, got {merged[key]!r}")
    hours, approvals = merged["min_hours_in_previous"], merged["approvals"]
    if isinstance(hours, bool) or not isinstance(hours, int | float) or hours < 0:
        raise _fail(
            source, f"stages.{name}.min_hours_in_previous must be a number >= 0, got {hours!r}"
        )
    if isinstance(approvals, bool) or not isinstance(approvals, int) or approvals < 0:
        raise _fail(
            source, f"stages.{name}.approvals must be a whole number >= 0, got {approvals!r}"
        )
    return StageRule(merged["gate"], float(hours), merged["outcome_required"], approvals)


def parse_policy(raw: dict[str, Any], source: str = "<policy>") -> Policy:
    """A :class:`Policy` from the parsed TOML (unknown sections and keys are errors)."""
    unknown = sorted(set(raw) - {"roles", "stages", "transitions", "tokens"})
    if unknown:
        raise _fail(
            source, f"unknown section(s) {unknown}; sections: roles, stages, transitions, tokens"
        )
    stages = {s: StageRule(**r) for s, r in DEFAULT_STAGES.items()}
    for name, rule in (raw.get("stages") or {}).items():
        stages[name] = _stage(name, rule, source)
    transitions = raw.get("transitions") or {}
    if set(transitions) - {"allow_skip"} or not isinstance(
        transitions.get("allow_skip", False), bool
    ):
        raise _fail(source, "[transitions] takes one key: allow_skip = true | false")
    tokens = raw.get("tokens") or {}
    days = tokens.get("max_days", 90)
    if (
        set(tokens) - {"max_days"}
        or isinstance(days, bool)
        or not isinstance(days, int | float)
        or days <= 0
    ):
        raise _fail(source, "[tokens] takes one key: max_days = a number of days > 0")
    return Policy(
        roles=_roles(raw.get("roles") or {}, source),
        stages=stages,
        allow_skip=bool(transitions.get("allow_skip", False)),
        token_max_days=float(days),
        source=source,
    )


def load_policy(path: str | Path | None = None, home: Path | None = None) -> Policy:
    """The policy from ``path``, ``$PLANTML_REGISTRY_POLICY`` or ``HOME/policy.toml``; else defaults."""
    chosen = path or os.environ.get(POLICY_ENV)
    if chosen is None and home is not None and (home / "policy.toml").is_file():
        chosen = home / "policy.toml"
    if chosen is None:
        return Policy()
    file = Path(chosen)
    if not file.is_file():
        raise RegistryError(
            f"policy file {file} not found; write one (see README) or drop --policy"
        )
    try:
        raw = tomllib.loads(file.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise _fail(str(file), f"not valid TOML ({exc})") from None
    return parse_policy(raw, str(file))
