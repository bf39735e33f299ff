"""What a study leaves in its folder: trials.csv, best.json, the best experiment file, plots."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import optuna
import pandas as pd
import yaml
from optuna.trial import FrozenTrial, TrialState

from plantml.tuning.space import is_config_group, override_key

if TYPE_CHECKING:
    from plantml.tuning.study import Settings

log = logging.getLogger(__name__)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _values(trial: FrozenTrial, settings: Settings) -> str:
    if trial.values is None:
        return ""
    pairs = zip(settings.objectives, trial.values, strict=False)
    return " ".join(f"{metric}={_fmt(v)}" for (metric, _), v in pairs)


def _params(trial: FrozenTrial) -> str:
    return "{" + ", ".join(f"{k}: {_fmt(v)}" for k, v in trial.params.items()) + "}"


def _complete(study: optuna.Study) -> list[FrozenTrial]:
    return study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))


def best_trials(study: optuna.Study, settings: Settings) -> list[FrozenTrial]:
    """The best trial (single objective) or the Pareto front sorted by the first objective."""
    if not _complete(study):
        return []
    if not settings.multi_objective:
        return [study.best_trial]
    sign = 1 if settings.objectives[0][1] == "minimize" else -1
    return sorted(study.best_trials, key=lambda t: sign * t.values[0])


def progress_line(study: optuna.Study, trial: FrozenTrial, settings: Settings) -> str:
    """One line per finished trial: number, state, value, params, best so far."""
    from plantml.tuning.study import counted_trials

    state = trial.state.name
    seconds = trial.user_attrs.get("seconds")
    took = f" in {seconds:.0f} s" if seconds is not None else ""
    if trial.state == TrialState.COMPLETE:
        what = _values(trial, settings)
    elif trial.state == TrialState.PRUNED:
        what = trial.user_attrs.get("prune_reason", "")
    else:
        what = trial.user_attrs.get("fail_reason", "")
    best = best_trials(study, settings)
    if not best:
        so_far = "no trial complete yet"
    elif settings.multi_objective:
        so_far = f"Pareto front: trials {[t.number for t in best]}"
    else:
        so_far = f"best so far: trial {best[0].number} {_values(best[0], settings)}"
    done = f"[{counted_trials(study)}/{settings.n_trials}]"
    return f"{done} trial {trial.number} {state}{took}: {what} {_params(trial)}; {so_far}"


def trials_frame(study: optuna.Study, settings: Settings) -> pd.DataFrame:
    """Every trial: number, state, values, params, duration, fail reason."""
    rows = []
    for t in study.get_trials(deepcopy=False):
        row: dict[str, Any] = {"number": t.number, "state": t.state.name}
        for i, (metric, _) in enumerate(settings.objectives):
            row[metric] = t.values[i] if t.values is not None else None
        if t.state == TrialState.PRUNED and t.intermediate_values:
            row["last_reported"] = t.intermediate_values[max(t.intermediate_values)]
            row["epochs_reported"] = len(t.intermediate_values)
        for name, value in t.params.items():
            row[f"params.{name}"] = value
        row["duration_s"] = t.duration.total_seconds() if t.duration else None
        row["worker"] = t.user_attrs.get("worker")
        row["fail_reason"] = t.user_attrs.get("fail_reason") or t.user_attrs.get("prune_reason")
        row["checkpoint"] = t.user_attrs.get("checkpoint")
        rows.append(row)
    frame = pd.DataFrame(rows)
    for column in ("epochs_reported", "worker"):
        if column in frame:
            frame[column] = frame[column].astype("Int64")
    return frame


def experiment_yaml(settings: Settings, trial: FrozenTrial, note: str) -> str:
    """A ``# @package _global_`` experiment: the base experiment, the command line's
    overrides and the trial's parameters (groups go into the defaults list)."""
    dirs = settings.setup.config_dirs
    defaults: list[Any] = [settings.setup.experiment] if settings.setup.experiment else []
    values: dict[str, Any] = {}
    left_out = []
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parser = OverridesParser.create()
    pairs: dict[str, Any] = {}
    for text in settings.setup.train_overrides:
        override = parser.parse_override(text)
        if override.is_delete():
            left_out.append(text)
            continue
        pairs[override_key(text)] = override.value()
    pairs.update(trial.params)
    groups = {}
    for key, value in pairs.items():
        if is_config_group(key, dirs):
            groups[key] = value
        else:
            node = values
            *parents, leaf = key.split(".")
            for part in parents:
                node = node.setdefault(part, {})
            node[leaf] = value
    defaults += [{f"override /{group}": choice} for group, choice in groups.items()]
    body = {"defaults": [*defaults, "_self_"], **values}
    fixed = " ".join(settings.fixed) or "none"
    header = [
        "# @package _global_",
        f"# {note}",
        f"# Written by plantml-tune; study folder {settings.study_dir}",
        f"# The study's trials also used these fixed overrides (a short tuning budget): {fixed}",
    ]
    if left_out:
        header.append(f"# Left out (add them on the command line): {' '.join(left_out)}")
    return "\n".join(header) + "\n" + yaml.safe_dump(body, sort_keys=False)


def _write_experiments(study: optuna.Study, settings: Settings, best: list[FrozenTrial]) -> Path:
    folder = settings.study_dir / "configs" / "experiment"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{settings.study_name}_best.yaml"
    (metric, direction) = settings.objectives[0]
    first = best[0]
    note = f"Best trial {first.number} of study {settings.study_name!r}: {_values(first, settings)} ({direction} {metric})"
    if settings.multi_objective:
        note = f"Pareto trial {first.number} (best {metric}) of study {settings.study_name!r}: {_values(first, settings)}"
        for trial in best:
            other = folder / f"{settings.study_name}_trial{trial.number}.yaml"
            other.write_text(
                experiment_yaml(
                    settings, trial, f"Pareto trial {trial.number}: {_values(trial, settings)}"
                )
            )
    path.write_text(experiment_yaml(settings, first, note))
    return path


def train_command(settings: Settings, name: str) -> str:
    """The plantml-train command that trains an experiment file of the study folder."""
    import shlex

    from plantml.shell import runnable

    command = f"{runnable('plantml-train')} --config-dir "
    command += shlex.quote(str(settings.study_dir / "configs"))
    dirs = ",".join(f"file://{Path(d).resolve()}" for d in settings.setup.config_dirs)
    if dirs:  # the base experiment may live in the study's own --config-dir
        command += " " + shlex.quote(f"hydra.searchpath=[{dirs}]")
    return f"{command} experiment={name}"


def write_outputs(study: optuna.Study, settings: Settings) -> dict:
    """Write the study folder's files; returns the contents of best.json."""
    folder = settings.study_dir
    folder.mkdir(parents=True, exist_ok=True)
    frame = trials_frame(study, settings)
    frame.to_csv(folder / "trials.csv", index=False)
    counts = {
        s.name: int((frame["state"] == s.name).sum()) if len(frame) else 0 for s in TrialState
    }
    best = best_trials(study, settings)
    summary: dict[str, Any] = {
        "study_name": settings.study_name,
        "storage": settings.storage,
        "objectives": [{"metric": m, "direction": d} for m, d in settings.objectives],
        "trials": {k.lower(): v for k, v in counts.items() if v},
        "best": None,
    }
    describe = [
        {
            "trial": t.number,
            "values": dict(zip([m for m, _ in settings.objectives], t.values, strict=True)),
            "params": t.params,
            "checkpoint": t.user_attrs.get("checkpoint"),
        }
        for t in best
    ]
    if best:
        summary["best"] = describe[0]
        if settings.multi_objective:
            summary["pareto"] = describe
            pd.DataFrame(
                [{"trial": d["trial"], **d["values"], **d["params"]} for d in describe]
            ).to_csv(folder / "pareto.csv", index=False)
        path = _write_experiments(study, settings, best)
        summary["best_experiment"] = str(path)
        summary["train_command"] = train_command(settings, path.stem)
    (folder / "best.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
    write_plots(study, settings, folder)
    if best:
        log.info(
            "study %r: %s; best trial %d: %s %s",
            settings.study_name,
            ", ".join(f"{v} {k.lower()}" for k, v in counts.items() if v),
            best[0].number,
            _values(best[0], settings),
            _params(best[0]),
        )
        log.info("outputs in %s; train the best parameters with:", folder)
        print(summary["train_command"], flush=True)
    else:
        log.warning(
            "study %r: no trial completed (%s); see the fail_reason column of %s",
            settings.study_name,
            ", ".join(f"{v} {k.lower()}" for k, v in counts.items() if v) or "no trials",
            folder / "trials.csv",
        )
    return summary


# -- plots (matplotlib Figure objects, no pyplot) --------------------------------------------
def _figure(width: float = 7.0, height: float = 4.0):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    return fig, fig.add_subplot()


def _target(settings: Settings):
    return (lambda t: t.values[0]) if settings.multi_objective else None


def history_figure(study: optuna.Study, settings: Settings):
    """The first objective per trial, the best so far, and pruned trials' last value."""
    trials = study.get_trials(deepcopy=False)
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    if not complete:
        return None
    metric, direction = settings.objectives[0]
    fig, ax = _figure()
    xs, ys = [t.number for t in complete], [t.values[0] for t in complete]
    ax.scatter(xs, ys, color="tab:blue", label="complete", zorder=3)
    pick = min if direction == "minimize" else max
    best, line = None, []
    for y in ys:
        best = y if best is None else pick(best, y)
        line.append(best)
    ax.step(xs, line, where="post", color="tab:orange", label="best so far")
    pruned = [t for t in trials if t.state == TrialState.PRUNED and t.intermediate_values]
    if pruned:
        ax.scatter(
            [t.number for t in pruned],
            [t.intermediate_values[max(t.intermediate_values)] for t in pruned],
            marker="x",
            color="grey",
            label="pruned (last reported)",
        )
    ax.set_xlabel("trial")
    ax.set_ylabel(f"{metric} ({direction})")
    ax.set_title(f"{settings.study_name}: optimization history")
    ax.legend(loc="best", fontsize=8)
    ax.grid(alpha=0.3)
    return fig


def curves_figure(study: optuna.Study, settings: Settings):
    """The pruning metric per epoch of every trial that reported one."""
    trials = [t for t in study.get_trials(deepcopy=False) if t.intermediate_values]
    if not trials:
        return None
    colors = {
        TrialState.COMPLETE: "tab:blue",
        TrialState.PRUNED: "grey",
        TrialState.FAIL: "tab:red",
    }
    fig, ax = _figure()
    for t in trials:
        steps = sorted(t.intermediate_values)
        ax.plot(
            steps,
            [t.intermediate_values[s] for s in steps],
            color=colors.get(t.state, "black"),
            alpha=0.7,
            marker=".",
        )
    ax.set_xlabel("epoch")
    ax.set_ylabel(settings.objectives[0][0])
    ax.set_title(f"{settings.study_name}: learning curves (grey: pruned, red: failed)")
    ax.grid(alpha=0.3)
    return fig


def importance_figure(study: optuna.Study, settings: Settings):
    """Parameter importances for the first objective (needs two complete trials)."""
    if len(_complete(study)) < 2:
        log.info("parameter importances need at least 2 complete trials: plot skipped")
        return None
    import warnings

    try:
        with warnings.catch_warnings():  # "few trials in a regime": true of every small study
            warnings.simplefilter("ignore", UserWarning)
            importances = optuna.importance.get_param_importances(study, target=_target(settings))
    except (ValueError, RuntimeError, ZeroDivisionError) as exc:
        log.info("parameter importances could not be computed (%s): plot skipped", exc)
        return None
    if not importances:
        log.info("parameter importances: no parameter varied: plot skipped")
        return None
    fig, ax = _figure(7.0, 1.0 + 0.4 * len(importances))
    names = list(importances)[::-1]
    ax.barh(names, [importances[n] for n in names], color="tab:blue")
    ax.set_xlabel(f"importance for {settings.objectives[0][0]}")
    ax.set_title(f"{settings.study_name}: parameter importances")
    return fig


def pareto_figure(study: optuna.Study, settings: Settings):
    """The first two objectives of every complete trial, the Pareto front highlighted."""
    complete = _complete(study)
    if not settings.multi_objective or not complete:
        return None
    front = {t.number for t in study.best_trials}
    (mx, dx), (my, dy) = settings.objectives[:2]
    fig, ax = _figure()
    others = [t for t in complete if t.number not in front]
    ax.scatter(
        [t.values[0] for t in others],
        [t.values[1] for t in others],
        color="lightgrey",
        label="dominated",
    )
    best = sorted((t for t in complete if t.number in front), key=lambda t: t.values[0])
    ax.plot(
        [t.values[0] for t in best],
        [t.values[1] for t in best],
        "o-",
        color="tab:red",
        label="Pareto front",
    )
    for t in best:
        ax.annotate(
            str(t.number),
            (t.values[0], t.values[1]),
            textcoords="offset points",
            xytext=(4, 4),
            fontsize=8,
        )
    ax.set_xlabel(f"{mx} ({dx})")
    ax.set_ylabel(f"{my} ({dy})")
    extra = (
        f" (first two of {len(settings.objectives)} objectives)"
        if len(settings.objectives) > 2
        else ""
    )
    ax.set_title(f"{settings.study_name}: Pareto front{extra}")
    ax.legend(loc="best", fontsize=8)
    ax.grid(alpha=0.3)
    return fig


def write_plots(study: optuna.Study, settings: Settings, folder: Path) -> list[Path]:
    """optimization_history.png, param_importances.png, learning_curves.png, pareto_front.png."""
    written = []
    for name, make in (
        ("optimization_history", history_figure),
        ("param_importances", importance_figure),
        ("learning_curves", curves_figure),
        ("pareto_front", pareto_figure),
    ):
        fig = make(study, settings)
        if fig is not None:
            fig.savefig(folder / f"{name}.png", dpi=110)
            written.append(folder / f"{name}.png")
    return written
