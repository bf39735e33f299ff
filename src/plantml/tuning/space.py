"""Search spaces written in Hydra's sweep grammar, sampled define-by-run by Optuna.

A search space maps a config key (or a config group) to a sweep expression:

    task.optimizer.lr: tag(log, interval(1e-4, 1e-2))   # float, log scale
    model.dropout: interval(0.0, 0.5)                   # float
    model.num_layers: range(1, 4)                       # int 1..3 (Hydra's range excludes the end)
    model.hidden_size: tag(log, int(interval(16, 256)))  # int, log scale
    model: choice(lstm, gru)                            # categorical (here a config group)
    model.bidirectional:                                # sampled only when the condition holds
      values: choice(true, false)
      when: {model: [lstm]}

Each expression is parsed with Hydra's own override parser, so anything that
works on the ``plantml-train -m`` command line reads the same here.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)

from plantml.errors import ConfigError

GRAMMAR_HELP = (
    "write interval(a, b), tag(log, interval(a, b)), int(interval(a, b)), range(a, b[, step]) "
    "or choice(x, y, ...)"
)


@dataclass(frozen=True)
class SearchParam:
    """One searched config key: its Optuna distribution and when it is sampled."""

    name: str
    distribution: BaseDistribution
    when: dict[str, tuple] = field(default_factory=dict)

    def active(self, sampled: Mapping[str, Any]) -> bool:
        """Whether the condition holds for the values sampled so far in this trial."""
        return all(key in sampled and sampled[key] in allowed for key, allowed in self.when.items())


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _range_distribution(name: str, sweep: Any) -> BaseDistribution:
    start, stop, step = sweep.start, sweep.stop, sweep.step
    if step is None or step <= 0:
        raise ConfigError(f"tune.params.{name}: range needs a positive step; {GRAMMAR_HELP}")
    # Hydra's range, like Python's, leaves out the end; Optuna's bounds are inclusive
    count = math.ceil((stop - start) / step - 1e-9)
    if count < 1:
        raise ConfigError(
            f"tune.params.{name}: range({start}, {stop}, {step}) is empty; "
            "the end must be larger than the start"
        )
    log = "log" in sweep.tags
    if all(_is_int(v) for v in (start, stop, step)):
        if log and step != 1:
            raise ConfigError(f"tune.params.{name}: a log-scale range needs step 1")
        return IntDistribution(start, start + (count - 1) * step, log=log, step=step)
    if log:
        raise ConfigError(f"tune.params.{name}: a log-scale range must use whole numbers")
    high = round(start + (count - 1) * step, 12)
    return FloatDistribution(float(start), float(high), step=float(step))


def _interval_distribution(name: str, sweep: Any) -> BaseDistribution:
    low, high = sweep.start, sweep.end
    if not low < high:
        raise ConfigError(
            f"tune.params.{name}: interval({low}, {high}) needs the start below the end"
        )
    log = "log" in sweep.tags
    if log and low <= 0:
        raise ConfigError(
            f"tune.params.{name}: a log-scale interval must start above 0 (got {low}); "
            "use interval(...) without tag(log, ...) or a positive start"
        )
    if "int" in sweep.tags or (_is_int(low) and _is_int(high)):
        return IntDistribution(math.ceil(low), math.floor(high), log=log)
    return FloatDistribution(float(low), float(high), log=log)


def _choice_distribution(name: str, choices: list) -> BaseDistribution:
    if not choices:
        raise ConfigError(f"tune.params.{name}: choice() needs at least one value")
    for choice in choices:
        if choice is not None and not isinstance(choice, bool | int | float | str):
            raise ConfigError(
                f"tune.params.{name}: choice values must be numbers, strings or booleans, "
                f"not {choice!r}; search list-valued settings by naming config groups instead"
            )
    return CategoricalDistribution(list(choices))


def parse_distribution(name: str, expression: Any) -> BaseDistribution:
    """The Optuna distribution of one sweep expression (``tag(log, interval(1e-4, 1e-2))``)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep, RangeSweep
    from hydra.errors import HydraException

    if isinstance(expression, list | tuple):  # a YAML list reads as choice(...)
        return _choice_distribution(name, list(expression))
    if not isinstance(expression, str):
        raise ConfigError(
            f"tune.params.{name}={expression!r} is a single value, not a search range; "
            f"{GRAMMAR_HELP}, or put '{name}={expression}' into tune.fixed"
        )
    key = re.sub(r"[^\w.]", "_", name) or "param"
    try:
        value = OverridesParser.create().parse_override(f"{key}={expression}").value()
    except HydraException as exc:
        message = str(exc).splitlines()[0]
        raise ConfigError(
            f"tune.params.{name}: cannot read {expression!r} ({message}); {GRAMMAR_HELP}"
        ) from None
    if isinstance(value, IntervalSweep):
        return _interval_distribution(name, value)
    if isinstance(value, RangeSweep):
        return _range_distribution(name, value)
    if isinstance(value, ChoiceSweep):
        return _choice_distribution(name, list(value.list))
    raise ConfigError(
        f"tune.params.{name}={expression!r} is a single value, not a search range; "
        f"{GRAMMAR_HELP}, or put '{name}={expression}' into tune.fixed"
    )


def _parse_condition(name: str, when: Any, known: dict[str, SearchParam]) -> dict[str, tuple]:
    if not isinstance(when, Mapping) or not when:
        raise ConfigError(
            f"tune.params.{name}.when must map a searched parameter to its allowed values, "
            "e.g. when: {model: [gru]}"
        )
    condition = {}
    for other, allowed in when.items():
        if other not in known:
            raise ConfigError(
                f"tune.params.{name}.when refers to {other!r}, which is not searched before "
                f"it; list {other!r} above {name!r} in tune.params (searched so far: "
                f"{', '.join(known) or 'none'})"
            )
        values = tuple(allowed) if isinstance(allowed, list | tuple) else (allowed,)
        choices = getattr(known[other].distribution, "choices", None)
        unknown = [v for v in values if choices is not None and v not in choices]
        if unknown:
            raise ConfigError(
                f"tune.params.{name}.when: {other} never takes {unknown}; its choices are "
                f"{list(choices)}"
            )
        condition[str(other)] = values
    return condition


def parse_space(params: Mapping[str, Any] | None) -> list[SearchParam]:
    """Parse ``tune.params`` (in order) into search parameters; errors name the key and the fix."""
    space: dict[str, SearchParam] = {}
    for name, spec in (params or {}).items():
        name = str(name)
        when: dict[str, tuple] = {}
        if isinstance(spec, Mapping):
            extra = set(spec) - {"values", "when"}
            if "values" not in spec or extra:
                raise ConfigError(
                    f"tune.params.{name}: a conditional parameter has the keys 'values' and "
                    f"'when' (got {sorted(spec)}), e.g. "
                    "{values: 'choice(true, false)', when: {model: [lstm]}}"
                )
            when = _parse_condition(name, spec.get("when"), space)
            spec = spec["values"]
        space[name] = SearchParam(name, parse_distribution(name, spec), when)
    return list(space.values())


def sample(trial: Any, space: list[SearchParam]) -> dict[str, Any]:
    """Suggest every active parameter of ``space`` on an Optuna trial (define-by-run)."""
    values: dict[str, Any] = {}
    for param in space:
        if not param.active(values):
            continue
        dist = param.distribution
        if isinstance(dist, CategoricalDistribution):
            values[param.name] = trial.suggest_categorical(param.name, dist.choices)
        elif isinstance(dist, IntDistribution):
            values[param.name] = trial.suggest_int(
                param.name, dist.low, dist.high, step=dist.step, log=dist.log
            )
        else:
            values[param.name] = trial.suggest_float(
                param.name, dist.low, dist.high, step=dist.step, log=dist.log
            )
    return values


_PLAIN = re.compile(r"[\w./\-+:]+")


def override_value(value: Any) -> str:
    """A value as Hydra's override grammar writes it (``0.001``, ``true``, ``null``, ``'a b'``)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    text = str(value)
    if _PLAIN.fullmatch(text) and text.lower() not in ("true", "false", "null"):
        return text
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def to_overrides(values: Mapping[str, Any]) -> list[str]:
    """Sampled values as ``key=value`` overrides for composing the trial's config."""
    return [f"{key}={override_value(value)}" for key, value in values.items()]


def override_key(override: str) -> str:
    """``model.hidden_size`` of the override ``+model.hidden_size=32``."""
    return override.split("=", 1)[0].lstrip("+~")


def is_config_group(name: str, config_dirs: list[str] | tuple[str, ...] = ()) -> bool:
    """Whether ``name`` is a config group (``model``) rather than a value key."""
    from importlib import resources
    from pathlib import Path

    if "." in name or "/" in name:
        return False
    if (resources.files("plantml.configs") / name).is_dir():
        return True
    return any((Path(d) / name).is_dir() for d in config_dirs)


def check_keys(space: list[SearchParam], cfg: Any, config_dirs: list[str] | tuple = ()) -> None:
    """Fail before any trial when a searched key is not in the composed config."""
    from omegaconf import DictConfig, OmegaConf

    for param in space:
        if is_config_group(param.name, config_dirs):
            continue
        if OmegaConf.select(cfg, param.name, default="<missing>") != "<missing>":
            continue
        parent = param.name.rsplit(".", 1)[0] if "." in param.name else ""
        node = OmegaConf.select(cfg, parent) if parent else cfg
        keys = ", ".join(map(str, node.keys())) if isinstance(node, DictConfig) else "none"
        raise ConfigError(
            f"tune.params.{param.name}: this experiment's config has no key {param.name!r} "
            f"(keys under {parent or 'the top level'}: {keys}); fix the name, or choose the "
            "search space written for this experiment with hparams_search=NAME"
        )
