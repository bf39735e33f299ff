"""The bundles the agent runs: one :class:`ModelSlot` per ``models:`` entry, with its fallbacks.

A slot loads and verifies its bundle (every file's SHA-256, as ``plantml-edge
verify`` does), knows which assets it serves (glob patterns), which sensor
columns it needs, its alarm rule, and the fallback bundles that can stand in
when sensors go stale. Fallbacks come from the bundle itself (``plantml-export``
with ``export.fallbacks`` lists them in the manifest under ``fallbacks``) and
from the config (``degradation.fallbacks``).
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from plantml.agent.alarms import AlarmRule
from plantml.agent.config import ModelConfig
from plantml.agent.errors import AgentConfigError
from plantml.edge import EdgeModel, StreamingPredictor


def model_info(model: EdgeModel) -> dict[str, str]:
    """What every message says about the model: name, version, bundle hash."""
    bundle = model.bundle
    return {
        "name": bundle.name,
        "version": bundle.version,
        "bundle_sha256": str(bundle.manifest.get("manifest_sha256", "")),
    }


def _rule(model: EdgeModel, cfg: ModelConfig) -> AlarmRule | None:
    """The alarm rule for one bundle: config values, else the bundle's threshold and direction."""
    alarm = cfg.alarm
    raise_at = alarm.raise_at if alarm.raise_at is not None else model.bundle.threshold
    if raise_at is None:
        return None
    clear_at = alarm.clear_at if alarm.clear_at is not None else raise_at
    direction = alarm.direction or model.bundle.alarm_when or "above"
    try:
        return AlarmRule(
            raise_at, clear_at, direction, alarm.k, alarm.n, alarm.min_duration, alarm.cooldown
        )
    except ValueError as exc:
        raise AgentConfigError(f"models ({model.bundle.name}).alarm: {exc}") from None


@dataclass
class Runner:
    """One bundle ready to stream: the model, its predictor, its alarm rule, what it lacks."""

    model: EdgeModel
    stream: StreamingPredictor
    rule: AlarmRule | None
    info: dict[str, str]
    without: frozenset[str] = frozenset()
    sensors: list[str] = field(init=False)  # the columns it needs besides asset and time

    def __post_init__(self) -> None:
        b = self.bundle
        self.sensors = [c for c in b.required_columns if c not in (b.asset_column, b.time_column)]

    @property
    def bundle(self):
        return self.model.bundle


def _runner(path: Path, cfg: ModelConfig, without: frozenset[str] = frozenset()) -> Runner:
    model = EdgeModel(path, threads=cfg.threads)
    if model.n_classes:
        raise AgentConfigError(
            f"bundle {path} predicts classes; the streaming runtime serves failure, RUL and "
            "anomaly bundles (use plantml-edge predict for class bundles)"
        )
    return Runner(model, StreamingPredictor(model), _rule(model, cfg), model_info(model), without)


class ModelSlot:
    """One ``models:`` entry: primary bundle, fallbacks, assets served, degradation policy."""

    def __init__(self, cfg: ModelConfig, index: int):
        self.cfg = cfg
        self.where = f"models[{index}]"
        self.primary = _runner(cfg.bundle, cfg)
        self.name = cfg.name or self.primary.bundle.name
        self.degradation = cfg.degradation
        self.fallbacks = self._fallbacks()
        self._check()
        runners = [self.primary, *self.fallbacks]
        self.history = max(r.bundle.window_length + r.bundle.stride - 1 for r in runners)
        self.sensors = self.primary.sensors

    def _fallbacks(self) -> list[Runner]:
        specs: list[tuple[Path, tuple[str, ...]]] = []
        for item in self.primary.bundle.manifest.get("fallbacks") or []:
            specs.append((self.primary.bundle.path / item["path"], tuple(item["without"])))
        specs += [(f.bundle, f.without) for f in self.degradation.fallbacks]
        out = []
        for path, without in specs:
            runner = _runner(path, self.cfg, frozenset(without))
            needs = set(runner.sensors) & runner.without
            if needs:
                raise AgentConfigError(
                    f"{self.where}: fallback bundle {path} is listed as without {sorted(without)} "
                    f"but needs {sorted(needs)}; export it without those sensors"
                )
            unknown = runner.without - set(self.primary.sensors)
            if unknown:
                raise AgentConfigError(
                    f"{self.where}: fallback {path} drops {sorted(unknown)}, which the primary "
                    f"bundle does not use (it uses {', '.join(self.primary.sensors)})"
                )
            out.append(runner)
        return sorted(out, key=lambda r: len(r.without))

    def _check(self) -> None:
        deg = self.degradation
        gap = self.primary.bundle.max_gap
        if gap is not None and deg.hold > gap:
            raise AgentConfigError(
                f"{self.where}.degradation.hold ({deg.hold:g}) is longer than the bundle's "
                f"max_gap ({gap:g}); predictions would be made on values filled beyond max_gap. "
                "Lower hold"
            )
        if deg.stale_after is not None and deg.on_stale == ("fallback",) and not self.fallbacks:
            raise AgentConfigError(
                f"{self.where}.degradation.on_stale is [fallback] but the bundle has no "
                "fallbacks; export some (export.fallbacks) or add rule/stop"
            )
        unknown = [c.column for c in deg.rule if c.column not in self.primary.sensors]
        if unknown:
            raise AgentConfigError(
                f"{self.where}.degradation.rule names {unknown}, which the bundle does not read "
                f"(it reads {', '.join(self.primary.sensors)})"
            )

    def serves(self, asset: str) -> bool:
        return any(fnmatch.fnmatchcase(asset, p) for p in self.cfg.assets)

    def fallback_for(self, stale: set[str]) -> Runner | None:
        """The fallback with the fewest dropped sensors that does not need any stale one."""
        for runner in self.fallbacks:
            if stale <= runner.without:
                return runner
        return None

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            **{f"bundle_{k}": v for k, v in self.primary.info.items()},
            "assets": list(self.cfg.assets),
            "fallbacks": [sorted(r.without) for r in self.fallbacks],
        }
