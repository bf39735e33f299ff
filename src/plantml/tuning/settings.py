"""What a study is, checked before any trial: objectives, storage, sampler, pruner.

:func:`read_settings` turns the ``tune:`` block of ``tune.yaml`` (and the
search space of ``hparams_search/``) into :class:`Settings`; the runner in
:mod:`plantml.tuning.study` uses them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
from omegaconf import DictConfig, ListConfig, OmegaConf

from plantml.errors import ConfigError
from plantml.tuning.space import (
    SearchParam,
    check_keys,
    override_key,
    parse_space,
)

log = logging.getLogger(__name__)

LATENCY = "onnx_latency_ms"  # measured on the trial's best checkpoint, not read from metrics
SMALLER_IS_BETTER = ("model/parameters", LATENCY)
TUNE_KEYS = ("tune.", "hparams_search", "experiment", "hydra.", "hydra/", "paths.output_dir")


@dataclass
class TuneSetup:
    """How ``plantml-tune`` was called: what the trials' configs are composed from."""

    train_overrides: list[str] = field(default_factory=list)
    experiment: str | None = None
    config_dirs: list[str] = field(default_factory=list)
    command: str = "plantml-tune"


@dataclass
class Settings:
    """A study's settings, checked before any trial (picklable for worker processes)."""

    study_name: str
    study_dir: Path
    storage: str
    objectives: list[tuple[str, str]]
    n_trials: int
    timeout: float | None
    n_workers: int
    sampler: dict | str
    pruner: dict | str
    space: list[SearchParam]
    fixed: list[str]
    enqueue: list[dict]
    setup: TuneSetup

    @property
    def multi_objective(self) -> bool:
        return len(self.objectives) > 1


def train_overrides(overrides: list[str]) -> list[str]:
    """The command-line overrides that apply to the trials (not tune.*, hydra.*, ...)."""
    return [o for o in overrides if not override_key(o).startswith(TUNE_KEYS)]


# -- settings ------------------------------------------------------------------------------
def _direction(metric: str, direction: Any, cfg: DictConfig) -> str:
    aliases = {"min": "minimize", "max": "maximize", "minimize": "minimize", "maximize": "maximize"}
    if direction is None:
        if metric == cfg.task.get("monitor"):
            direction = cfg.task.get("mode")
        elif metric in SMALLER_IS_BETTER:
            direction = "minimize"
        else:
            raise ConfigError(
                f"no direction for the metric {metric!r}: set tune.direction=minimize or "
                "tune.direction=maximize (or direction: in tune.objectives)"
            )
    if str(direction) not in aliases:
        raise ConfigError(
            f"unknown direction {direction!r} for {metric!r}; use minimize or maximize"
        )
    return aliases[str(direction)]


def _objectives(tune: DictConfig, cfg: DictConfig) -> list[tuple[str, str]]:
    if not tune.get("objectives"):
        metric = str(tune.get("metric") or cfg.task.get("monitor"))
        return [(metric, _direction(metric, tune.get("direction"), cfg))]
    objectives = []
    for item in tune.objectives:
        item = {"metric": item} if isinstance(item, str) else item
        if not item.get("metric"):
            raise ConfigError(
                "each entry of tune.objectives needs a metric, e.g. "
                "[{metric: val/rmse, direction: minimize}, {metric: model/parameters}]"
            )
        metric = str(item["metric"])
        objectives.append((metric, _direction(metric, item.get("direction"), cfg)))
    if any(metric == LATENCY for metric, _ in objectives):
        try:
            from plantml.export.onnx import checkpoint_latency_ms  # noqa: F401
        except (ImportError, AttributeError) as exc:
            raise ConfigError(
                f"the objective {LATENCY} needs plantml.export.onnx.checkpoint_latency_ms "
                f"({exc}); drop it from tune.objectives or update plantml"
            ) from None
    return objectives


def _container(node: Any) -> Any:
    if isinstance(node, DictConfig | ListConfig):
        return OmegaConf.to_container(node, resolve=True)
    return node


def _check_enqueue(enqueue: list[dict], space: dict[str, SearchParam]) -> None:
    for item in enqueue:
        for name, value in item.items():
            if name not in space:
                raise ConfigError(
                    f"tune.enqueue sets {name!r}, which is not searched; searched parameters: "
                    f"{', '.join(space)}"
                )
            dist = space[name].distribution
            choices = getattr(dist, "choices", None)
            inside = (
                value in choices
                if choices is not None
                else isinstance(value, int | float) and dist.low <= value <= dist.high
            )
            if not inside:
                raise ConfigError(
                    f"tune.enqueue: {name}={value!r} is outside its search range {dist}; "
                    "enqueue a value the search space allows"
                )


def read_settings(cfg: DictConfig, setup: TuneSetup) -> Settings:
    """The study's settings from the composed ``tune.yaml``; problems are ConfigErrors."""
    import re

    tune = cfg.get("tune")
    if tune is None:
        raise ConfigError("the config has no tune: block; run plantml-tune (it composes tune.yaml)")
    name = str(tune.get("study_name") or cfg.get("run_name") or "study")
    if not re.fullmatch(r"[\w.\-]+", name):
        raise ConfigError(
            f"tune.study_name={name!r} may hold only letters, digits, '_', '-' and '.' "
            "(it names the study folder and the best experiment file)"
        )
    study_dir = (Path(str(cfg.paths.log_dir)) / "tune" / name).resolve()
    n_trials, n_workers = int(tune.get("n_trials") or 0), int(tune.get("n_workers") or 1)
    if n_trials < 1 or n_workers < 1:
        raise ConfigError("tune.n_trials and tune.n_workers must be at least 1")
    space = parse_space(_container(tune.get("params")))
    on_command_line = {override_key(o) for o in setup.train_overrides}
    for param in space:
        if param.name in on_command_line:
            log.warning("%s is set on the command line: left out of the search", param.name)
    space = [p for p in space if p.name not in on_command_line]
    if not space:
        raise ConfigError(
            "the search space is empty: choose one with hparams_search=NAME "
            "(configs/hparams_search/) or set tune.params"
        )
    check_keys(space, cfg, setup.config_dirs)
    enqueue = [dict(item) for item in (_container(tune.get("enqueue")) or [])]
    _check_enqueue(enqueue, {p.name: p for p in space})
    written_for = tune.get("experiment")
    if written_for and setup.experiment and written_for != setup.experiment:
        raise ConfigError(
            f"this search space was written for experiment={written_for}, but the study runs "
            f"experiment={setup.experiment}; add experiment={written_for}, or "
            "tune.experiment=null to use it with this experiment anyway"
        )
    settings = Settings(
        study_name=name,
        study_dir=study_dir,
        storage=str(tune.get("storage") or f"sqlite:///{study_dir / 'study.db'}"),
        objectives=_objectives(tune, cfg),
        n_trials=n_trials,
        timeout=float(tune.timeout) if tune.get("timeout") else None,
        n_workers=n_workers,
        sampler=_container(tune.get("sampler")) or {"name": "tpe"},
        pruner=_container(tune.get("pruner")) or {"name": "none"},
        space=space,
        fixed=[str(o) for o in (tune.get("fixed") or [])],
        enqueue=enqueue,
        setup=setup,
    )
    build_sampler(settings.sampler), build_pruner(settings.pruner)  # fail before any storage
    return settings


# -- storage, sampler, pruner ----------------------------------------------------------------
def open_storage(url: str) -> optuna.storages.BaseStorage:
    """``sqlite:///file.db`` (WAL, waits for locks), any SQLAlchemy URL, or ``journal:///file.log``."""
    if url.startswith("journal://"):
        from optuna.storages.journal import JournalFileBackend, JournalStorage

        path = Path(url[len("journal://") :])
        path.parent.mkdir(parents=True, exist_ok=True)
        return JournalStorage(JournalFileBackend(str(path)))
    engine_kwargs = None
    if url.startswith("sqlite:///"):
        import sqlite3

        path = Path(url[len("sqlite:///") :])
        path.parent.mkdir(parents=True, exist_ok=True)
        with sqlite3.connect(path, timeout=60) as con:  # WAL: readers never block the writer
            con.execute("PRAGMA journal_mode=WAL")
        engine_kwargs = {"connect_args": {"timeout": 60}}
    try:
        return optuna.storages.RDBStorage(
            url, engine_kwargs=engine_kwargs, heartbeat_interval=30, grace_period=120
        )
    except ImportError as exc:
        raise ConfigError(
            f"tune.storage={url}: the database driver is not installed ({exc}); "
            "install it (postgresql: pip install psycopg2-binary) or use the default SQLite file"
        ) from None
    except Exception as exc:  # sqlalchemy's errors: a bad URL, a server that is not there
        raise ConfigError(f"cannot open tune.storage={url}: {exc}") from None


def _build(kind: str, spec: dict | str, classes: dict[str, Any]) -> Any:
    """``{name: median, n_warmup_steps: 2}`` (or just ``median``) → the Optuna object.

    Options the chosen class does not take are dropped with a warning: Hydra merges the
    search space's options with tune.yaml's, so ``tune.pruner.name=hyperband`` on the
    command line still carries the median pruner's options.
    """
    import inspect

    spec = {"name": spec} if isinstance(spec, str) else dict(spec)
    name = str(spec.pop("name", "none"))
    spec = {k: v for k, v in spec.items() if v is not None}  # null: Optuna's default
    if name not in classes:
        raise ConfigError(f"unknown tune.{kind}.name={name!r}; use one of {', '.join(classes)}")
    accepted = inspect.signature(classes[name]).parameters
    known = {p for cls in classes.values() for p in inspect.signature(cls).parameters}
    ignored = sorted(k for k in spec if k not in accepted)
    if ignored:
        unknown = [k for k in ignored if k not in known]
        (log.warning if unknown else log.info)(
            "tune.%s: %s does not take %s (ignored); it takes: %s",
            kind,
            name,
            ", ".join(ignored),
            ", ".join(accepted) or "no options",
        )
    try:
        return classes[name](**{k: v for k, v in spec.items() if k in accepted})
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"tune.{kind} ({name}): {exc}") from None


def build_sampler(spec: dict | str, seed_offset: int = 0) -> optuna.samplers.BaseSampler:
    """tpe | random | nsga2 (``seed`` shifted per worker and session, so they differ)."""
    spec = {"name": spec} if isinstance(spec, str) else dict(spec)
    if spec.get("seed") is not None:
        spec["seed"] = int(spec["seed"]) + seed_offset
    samplers = {
        "tpe": optuna.samplers.TPESampler,
        "random": optuna.samplers.RandomSampler,
        "nsga2": optuna.samplers.NSGAIISampler,
    }
    return _build("sampler", spec, samplers)


def build_pruner(spec: dict | str) -> optuna.pruners.BasePruner:
    """none | median | successive_halving | hyperband | threshold, with their options."""
    pruners = {
        "none": optuna.pruners.NopPruner,
        "median": optuna.pruners.MedianPruner,
        "successive_halving": optuna.pruners.SuccessiveHalvingPruner,
        "hyperband": optuna.pruners.HyperbandPruner,
        "threshold": optuna.pruners.ThresholdPruner,
    }
    return _build("pruner", spec, pruners)


def pruner_name(settings: Settings) -> str:
    spec = settings.pruner
    return str(spec if isinstance(spec, str) else spec.get("name", "none"))


def pruning_enabled(settings: Settings) -> bool:
    return pruner_name(settings) != "none" and not settings.multi_objective
