"""The study runner behind ``plantml-tune``: storage, sampler, pruner, trials, workers, resume.

Every trial composes ``train.yaml`` afresh (base experiment, the search space's fixed
overrides, the command line, the sampled values) and calls the same
:func:`plantml.training.train` that ``plantml-train`` runs, in ``<study>/trials/<number>/``.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import socket
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import optuna
from omegaconf import DictConfig, open_dict
from optuna.trial import FrozenTrial, TrialState

import plantml.resolvers  # noqa: F401  (before any compose)
from plantml.errors import ConfigError, PlantMLError
from plantml.tuning.settings import (
    LATENCY,
    Settings,
    TuneSetup,
    build_pruner,
    build_sampler,
    open_storage,
    pruner_name,
    pruning_enabled,
    read_settings,
)
from plantml.tuning.space import (
    override_key,
    override_value,
    sample,
    to_overrides,
)

log = logging.getLogger(__name__)

INTERRUPTED = "interrupted"  # fail reasons starting with this do not count towards n_trials
TrainFn = Callable[..., dict]


def load_study(settings: Settings, storage: Any, seed_offset: int = 0) -> optuna.Study:
    """Create the study, or load it when it exists (resume), with this session's sampler."""
    pruner = build_pruner(settings.pruner if pruning_enabled(settings) else {"name": "none"})
    directions = [direction for _, direction in settings.objectives]
    study = optuna.create_study(
        storage=storage,
        study_name=settings.study_name,
        sampler=build_sampler(settings.sampler, seed_offset),
        pruner=pruner,
        directions=directions,
        load_if_exists=True,
    )
    metrics = [metric for metric, _ in settings.objectives]
    existing = [d.name.lower() for d in study.directions]
    stored = study.user_attrs.get("metrics")
    if existing != directions or (stored is not None and stored != metrics):
        raise ConfigError(
            f"study {settings.study_name!r} in {settings.storage} optimizes "
            f"{stored or '?'} ({', '.join(existing)}), not {metrics} ({', '.join(directions)}); "
            "choose another tune.study_name or the same objectives"
        )
    if stored is None:
        study.set_user_attr("metrics", metrics)
    return study


# -- one trial -------------------------------------------------------------------------------
def compose_train(overrides: list[str], output_dir: Path, config_dirs: list[str]) -> DictConfig:
    """``train.yaml`` with ``overrides`` (later ones win), writing into ``output_dir``."""
    from hydra import compose, initialize_config_module
    from hydra.core.global_hydra import GlobalHydra
    from hydra.errors import HydraException
    from hydra.initialize import get_gh_backup, restore_gh_from_backup

    latest: dict[str, str] = {}
    for override in overrides:
        latest.pop(override_key(override), None)
        latest[override_key(override)] = override
    search = [f"file://{Path(d).resolve()}" for d in config_dirs]
    if search:
        latest["hydra.searchpath"] = f"hydra.searchpath=[{','.join(map(override_value, search))}]"
    backup = get_gh_backup()
    GlobalHydra.instance().clear()
    try:
        with initialize_config_module(config_module="plantml.configs", version_base="1.3"):
            cfg = compose(config_name="train", overrides=list(latest.values()))
    except HydraException as exc:
        raise ConfigError(f"cannot compose the trial's config: {exc}") from None
    finally:
        restore_gh_from_backup(backup)
    with open_dict(cfg):
        cfg.paths.output_dir = str(output_dir)
    return cfg


def trial_overrides(settings: Settings, params: dict[str, Any]) -> list[str]:
    """Base experiment, the space's fixed overrides, the command line, then the sampled values."""
    base = [f"experiment={settings.setup.experiment}"] if settings.setup.experiment else []
    return [*base, *settings.fixed, *settings.setup.train_overrides, *to_overrides(params)]


def _parameter_count(ckpt_path: str | None) -> float:
    import torch

    if not ckpt_path:
        raise ValueError("model/parameters: the trial saved no checkpoint to count them in")
    state = torch.load(ckpt_path, map_location="cpu", weights_only=False)["state_dict"]
    return float(sum(v.numel() for k, v in state.items() if k.startswith("model.")))


def objective_values(metrics: dict, objectives: list[tuple[str, str]]) -> list[float]:
    """The study's objective values from a trial's metrics (latency measured on its checkpoint)."""
    values = []
    for metric, _ in objectives:
        if metric == LATENCY:
            from plantml.export.onnx import checkpoint_latency_ms

            if not metrics.get("best_checkpoint"):
                raise ValueError(f"{LATENCY}: the trial saved no checkpoint to export")
            value = checkpoint_latency_ms(metrics["best_checkpoint"], threads=1)
        elif metric == "model/parameters" and metric not in metrics:
            value = _parameter_count(metrics.get("best_checkpoint"))
        elif metric in metrics and isinstance(metrics[metric], int | float):
            value = metrics[metric]
        else:
            numeric = sorted(k for k, v in metrics.items() if isinstance(v, int | float))
            raise ConfigError(
                f"the metric {metric!r} is not in the trial's metrics; set tune.metric (or "
                f"tune.objectives) to one of: {', '.join(numeric)}"
            )
        values.append(float(value))
    return values


class _OnlyStudyLines(logging.Filter):
    """While a trial runs, the console shows the study's lines and warnings only."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.WARNING or record.name.startswith("plantml.tuning")


@contextmanager
def _trial_output(path: Path) -> Iterator[None]:
    """The trial's log lines and printed tables go to ``<trial>/train.log``, not the console."""
    import contextlib

    path.parent.mkdir(parents=True, exist_ok=True)
    root, quiet = logging.getLogger(), _OnlyStudyLines()
    with open(path, "a", encoding="utf-8") as stream, contextlib.redirect_stdout(stream):
        handler = logging.StreamHandler(stream)
        handler.setFormatter(
            logging.Formatter("[%(asctime)s][%(name)s][%(levelname)s] - %(message)s")
        )
        for other in root.handlers:
            other.addFilter(quiet)
        root.addHandler(handler)
        try:
            yield
        finally:
            root.removeHandler(handler)
            for other in root.handlers:
                other.removeFilter(quiet)


def run_trial(trial: optuna.Trial, settings: Settings, train_fn: TrainFn) -> list[float]:
    """Sample, compose, train and score one trial; raises TrialPruned or the trial's error."""
    params = sample(trial, settings.space)
    trial_dir = settings.study_dir / "trials" / str(trial.number)
    with _trial_output(trial_dir / "train.log"):
        cfg = compose_train(
            trial_overrides(settings, params), trial_dir, settings.setup.config_dirs
        )
        wandb = (cfg.get("logger") or {}).get("wandb")
        if wandb is not None:  # W&B runs grouped by study
            with open_dict(cfg):
                wandb.group = settings.study_name
                wandb.name = f"{settings.study_name}-trial{trial.number}"
        callbacks = []
        if pruning_enabled(settings):
            from plantml.tuning.pruning import PruningCallback

            callbacks.append(PruningCallback(trial, settings.objectives[0][0]))
        metrics = train_fn(cfg, extra_callbacks=callbacks)
        if metrics.get("best_checkpoint"):
            trial.set_user_attr("checkpoint", str(metrics["best_checkpoint"]))
        values = objective_values(metrics, settings.objectives)
    for (metric, _), value in zip(settings.objectives, values, strict=True):
        if value != value:  # NaN
            raise FloatingPointError(f"{metric} is NaN (training diverged)")
    return values


# -- the trial loop --------------------------------------------------------------------------
def counts_towards_n_trials(trial: FrozenTrial) -> bool:
    """Finished and running trials count; an interrupted or killed one is run again."""
    if trial.state == TrialState.WAITING:
        return False
    if trial.state != TrialState.FAIL:
        return True
    reason = str(trial.user_attrs.get("fail_reason") or "")
    return bool(reason) and not reason.startswith(INTERRUPTED)


def counted_trials(study: optuna.Study) -> int:
    return sum(counts_towards_n_trials(t) for t in study.get_trials(deepcopy=False))


@contextmanager
def _heartbeat(storage: Any, trial: optuna.Trial) -> Iterator[None]:
    """Tell an RDB storage that this trial's process is alive (others fail it when it stops)."""
    interval = storage.get_heartbeat_interval() if hasattr(storage, "record_heartbeat") else None
    if not interval:
        yield
        return
    stop = threading.Event()

    def beat() -> None:
        while True:
            try:
                storage.record_heartbeat(trial._trial_id)
            except Exception as exc:
                log.debug("heartbeat failed: %s", exc)
            if stop.wait(interval):
                return

    thread = threading.Thread(target=beat, daemon=True, name="plantml-tune-heartbeat")
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(5)


def fail_dead_trials(study: optuna.Study) -> list[int]:
    """Mark RUNNING trials whose process is gone (killed, power cut) FAIL; returns their numbers.

    Trials of this machine are checked by process id at once; trials of other machines
    by the RDB heartbeat (after its grace period).
    """
    host, failed = socket.gethostname(), []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        pid = trial.user_attrs.get("pid")
        if trial.user_attrs.get("host") != host or not pid or _alive(int(pid)):
            continue
        reason = f"{INTERRUPTED}: its process ({pid}) stopped before the trial finished"
        try:
            study._storage.set_trial_user_attr(trial._trial_id, "fail_reason", reason)
            study.tell(trial.number, state=TrialState.FAIL, skip_if_finished=True)
            failed.append(trial.number)
        except (RuntimeError, ValueError, optuna.exceptions.UpdateFinishedTrialError):
            pass  # another worker got there first
    optuna.storages.fail_stale_trials(study)
    return failed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _after_trial(failed: bool) -> None:
    """Leave the process as a fresh trial expects it, however the last one ended."""
    import gc
    import sys

    signal.signal(signal.SIGINT, signal.default_int_handler)  # Lightning leaves it ignored
    wandb = sys.modules.get("wandb")
    if wandb is not None and getattr(wandb, "run", None) is not None:
        wandb.finish(exit_code=1 if failed else 0)  # else the next trial would log into it
    gc.collect()
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()


def _one_trial(
    study: optuna.Study, storage: Any, settings: Settings, train_fn: TrainFn, worker: int
) -> None:
    trial = study.ask()
    for key, value in (("host", socket.gethostname()), ("pid", os.getpid()), ("worker", worker)):
        trial.set_user_attr(key, value)
    start = time.perf_counter()
    values, state = None, TrialState.COMPLETE
    try:
        with _heartbeat(storage, trial):
            values = run_trial(trial, settings, train_fn)
    except optuna.TrialPruned as exc:
        state = TrialState.PRUNED
        trial.set_user_attr("prune_reason", str(exc) or "pruned")
    except (KeyboardInterrupt, SystemExit):  # Lightning turns Ctrl-C into SystemExit
        trial.set_user_attr("fail_reason", f"{INTERRUPTED} (Ctrl-C)")
        study.tell(trial, state=TrialState.FAIL)
        raise KeyboardInterrupt from None
    except Exception as exc:
        state = TrialState.FAIL
        reason = str(exc) if isinstance(exc, PlantMLError) else f"{type(exc).__name__}: {exc}"
        trial.set_user_attr("fail_reason", reason[:2000] or type(exc).__name__)
        error_file = settings.study_dir / "trials" / str(trial.number) / "error.txt"
        error_file.parent.mkdir(parents=True, exist_ok=True)
        error_file.write_text("".join(traceback.format_exception(exc)))
        if isinstance(exc, ConfigError) and "is not in the trial's metrics" in str(exc):
            study.tell(trial, state=state)
            raise  # every trial would fail the same way: stop the study
    finally:
        _after_trial(failed=state != TrialState.COMPLETE)
    trial.set_user_attr("seconds", round(time.perf_counter() - start, 2))
    frozen = study.tell(trial, values, state=state)
    from plantml.tuning.outputs import progress_line

    log.info("%s", progress_line(study, frozen, settings))


def optimize(settings: Settings, worker: int = 0, train_fn: TrainFn | None = None) -> None:
    """One worker's loop: run trials until the study holds n_trials (or the timeout)."""
    if train_fn is None:
        from plantml.training import train as train_fn
    storage = open_storage(settings.storage)
    seed_probe = optuna.load_study(study_name=settings.study_name, storage=storage)
    offset = 1000 * worker + len(seed_probe.get_trials(deepcopy=False))
    study = load_study(settings, storage, seed_offset=offset)
    start = time.monotonic()
    while counted_trials(study) < settings.n_trials:
        if settings.timeout and time.monotonic() - start >= settings.timeout:
            log.info("tune.timeout=%ss reached: no new trials", settings.timeout)
            break
        optuna.storages.fail_stale_trials(study)
        _one_trial(study, storage, settings, train_fn, worker)


# -- workers ---------------------------------------------------------------------------------
def _threads(n_workers: int) -> int:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, (cores or 1) // n_workers)


def _worker_process(settings: Settings, worker: int, train_fn: TrainFn | None) -> None:
    """Entry point of a spawned worker: joins the study and runs trials."""
    threads = str(_threads(settings.n_workers))
    os.environ["OMP_NUM_THREADS"] = threads
    logging.basicConfig(
        level=logging.INFO,
        format=f"[%(asctime)s][worker {worker}][%(name)s][%(levelname)s] - %(message)s",
    )
    from plantml.cli.common import quiet_libraries

    quiet_libraries()
    quiet_optuna()
    import torch

    torch.set_num_threads(int(threads))
    try:
        optimize(settings, worker, train_fn)
    except KeyboardInterrupt:
        raise SystemExit(130) from None
    except PlantMLError as exc:
        log.error("%s", exc)
        raise SystemExit(2) from None


def _run_workers(settings: Settings, train_fn: TrainFn | None) -> None:
    if settings.n_workers == 1:
        optimize(settings, 0, train_fn)
        return
    import torch

    threads = _threads(settings.n_workers)
    torch.set_num_threads(threads)
    log.info(
        "%d workers on this machine share the study (%s), %d torch thread(s) each; more "
        "machines join with the same command and tune.storage=journal:///shared/study.log or "
        "a postgresql:// URL",
        settings.n_workers,
        settings.storage,
        threads,
    )
    context = multiprocessing.get_context("spawn")
    workers = [
        context.Process(target=_worker_process, args=(settings, i, train_fn), name=f"worker-{i}")
        for i in range(1, settings.n_workers)
    ]
    for process in workers:
        process.start()
    try:
        optimize(settings, 0, train_fn)
    except KeyboardInterrupt:
        for process in workers:  # Ctrl-C in a terminal reaches them too; `kill -INT` does not
            if process.is_alive():
                os.kill(process.pid, signal.SIGINT)
        raise
    finally:
        for process in workers:
            process.join()
    failed = [p.name for p in workers if p.exitcode not in (0, 130)]
    if failed:
        log.warning("%s stopped with an error; see their log lines above", ", ".join(failed))


def quiet_optuna() -> None:
    """Optuna's own per-trial lines repeat ours; its notes on heartbeats say nothing to users."""
    import warnings

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used")


def run_study(cfg: DictConfig, setup: TuneSetup, train_fn: TrainFn | None = None) -> dict:
    """Run (or resume) the study configured in ``cfg.tune``; returns what best.json holds."""
    from plantml.tuning.outputs import write_outputs

    quiet_optuna()
    settings = read_settings(cfg, setup)
    settings.study_dir.mkdir(parents=True, exist_ok=True)
    if settings.multi_objective and pruner_name(settings) != "none":
        log.warning(
            "pruning is not supported for multi-objective studies in Optuna: tune.pruner=%s "
            "is switched off",
            pruner_name(settings),
        )
    study = load_study(settings, open_storage(settings.storage))
    failed = fail_dead_trials(study)
    if failed:
        log.warning("trials %s were left RUNNING by a stopped process: marked FAIL", failed)
    if not study.get_trials(deepcopy=False):
        for params in settings.enqueue:
            study.enqueue_trial(params, skip_if_exists=True)
    done = counted_trials(study)
    if done:
        log.info(
            "resuming study %r: %d of %d trials already there",
            settings.study_name,
            done,
            settings.n_trials,
        )
    if done >= settings.n_trials:
        log.info(
            "study %r already holds %d trials: raise tune.n_trials to run more, or choose "
            "another tune.study_name",
            settings.study_name,
            done,
        )
    else:
        log.info(
            "study %r: %d trial(s) to run, %s; storage %s; folder %s",
            settings.study_name,
            settings.n_trials - done,
            " and ".join(f"{d} {m}" for m, d in settings.objectives),
            settings.storage,
            settings.study_dir,
        )
    try:
        if done < settings.n_trials:
            _run_workers(settings, train_fn)
    except KeyboardInterrupt:
        log.warning(
            "interrupted: the running trial is marked FAIL and finished trials are kept; "
            "resume with: %s",
            settings.setup.command,
        )
        write_outputs(study, settings)
        raise
    return write_outputs(study, settings)
