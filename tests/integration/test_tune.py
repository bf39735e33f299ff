"""plantml-tune: a study end to end, pruning, resume, failing trials, two workers, Pareto fronts.

The command-line tests train tiny models through the installed entry points; the
pruning, interruption and multi-objective tests drive the real study runner with a
stand-in for ``train`` that reports prescribed values, so their outcome is certain.
"""

from __future__ import annotations

import json
import shlex
import shutil
import socket
import subprocess
from pathlib import Path
from types import SimpleNamespace

import optuna
import pandas as pd
import pytest
import yaml
from omegaconf import OmegaConf, open_dict

from plantml import api
from plantml.errors import ConfigError
from plantml.tuning.settings import TuneSetup
from plantml.tuning.study import objective_values, run_study
from tests.integration.helpers import TINY, metrics, run_cli, run_dirs

SPACE = """# @package _global_
tune:
  n_trials: 3
  sampler: {name: random, seed: 0}
  pruner: {name: median, n_startup_trials: 1, n_warmup_steps: 0}
  fixed: [bootstrap=0]
  params:
    task.optimizer.lr: tag(log, interval(1e-3, 1e-2))
    model.hidden_size: choice(8, 16)
    data.split_by.method: choice(asset, random)   # random is not a method: that trial fails
  enqueue:
    - {data.split_by.method: random}
    - {data.split_by.method: asset, model.hidden_size: 8, task.optimizer.lr: 0.005}
    - {data.split_by.method: asset, model.hidden_size: 16, task.optimizer.lr: 0.002}
"""
SPACE_OK = """# @package _global_
tune:
  n_trials: 4
  sampler: {name: random, seed: 0}
  pruner: {name: none}
  fixed: [bootstrap=0]
  params:
    task.optimizer.lr: tag(log, interval(1e-3, 1e-2))
    model.hidden_size: choice(8, 16)
"""


def _study(db: Path, name: str = "synthetic_failure") -> optuna.Study:
    return optuna.load_study(study_name=name, storage=f"sqlite:///{db}")


@pytest.fixture(scope="module")
def tuned(tmp_path_factory):
    cwd = tmp_path_factory.mktemp("tune")
    configs = cwd / "my_configs"
    (configs / "hparams_search").mkdir(parents=True)
    (configs / "hparams_search" / "tiny.yaml").write_text(SPACE)
    (configs / "hparams_search" / "tiny_ok.yaml").write_text(SPACE_OK)
    args = ["--config-dir", str(configs), "hparams_search=tiny", *TINY]
    proc = run_cli("plantml-tune", *args, cwd=cwd)
    return cwd, args, proc, cwd / "outputs" / "tune" / "synthetic_failure"


@pytest.mark.slow
def test_study_completes_and_writes_its_outputs(tuned):
    _, _, proc, folder = tuned
    trials = pd.read_csv(folder / "trials.csv")
    assert list(trials["number"]) == [0, 1, 2]
    # a trial that fails (an invalid parameter) is recorded with its reason; the study goes on
    assert trials.loc[0, "state"] == "FAIL"
    assert "unknown data.split_by.method 'random'" in trials.loc[0, "fail_reason"]
    assert set(trials.loc[1:, "state"]) <= {"COMPLETE", "PRUNED"}
    assert (trials["state"] == "COMPLETE").any()
    assert {"val/auprc", "params.model.hidden_size", "duration_s", "fail_reason"} <= set(trials)
    best = json.loads((folder / "best.json").read_text())
    assert best["objectives"] == [{"metric": "val/auprc", "direction": "maximize"}]
    assert best["best"]["trial"] in (1, 2) and best["trials"]["fail"] == 1
    for png in ("optimization_history.png", "learning_curves.png"):
        assert (folder / png).read_bytes()[:4] == b"\x89PNG", png
    out = proc.stdout + proc.stderr
    if (trials["state"] == "COMPLETE").sum() >= 2:
        assert (folder / "param_importances.png").is_file()
    else:
        assert "parameter importances need at least 2 complete trials: plot skipped" in out
    # each trial trained into its own folder; the pruning callback reported every epoch
    study = _study(folder / "study.db")
    for trial in study.get_trials(states=(optuna.trial.TrialState.COMPLETE,)):
        assert (folder / "trials" / str(trial.number) / "checkpoints" / "best.ckpt").is_file()
        assert sorted(trial.intermediate_values) == [0, 1]
    assert (folder / "trials" / "0" / "error.txt").is_file()
    assert list(folder.glob("sessions/*/tune.log"))
    # one progress line per trial on the console; the trials' own tables went to their logs
    assert "[3/3] trial 2" in out and "best so far: trial" in out
    assert "by operating condition" not in out
    assert "by operating condition" in (folder / "trials" / "1" / "train.log").read_text()


@pytest.mark.slow
def test_best_parameters_train_with_plantml_train(tuned):
    cwd, _, proc, folder = tuned
    best = json.loads((folder / "best.json").read_text())["best"]
    experiment = folder / "configs" / "experiment" / "synthetic_failure_best.yaml"
    text = experiment.read_text()
    assert text.startswith("# @package _global_")
    body = yaml.safe_load(text)
    assert body["defaults"] == ["synthetic_failure", {"override /logger": "csv"}, "_self_"]
    assert body["model"]["hidden_size"] == best["params"]["model.hidden_size"]
    command = json.loads((folder / "best.json").read_text())["train_command"]
    # runnable as printed: the bare name on PATH, else the entry point's path (.venv/bin/...)
    tool, *args = shlex.split(command)
    assert Path(tool).name == "plantml-train" and (Path(tool).is_file() or shutil.which(tool))
    assert args[:2] == ["--config-dir", str(folder / "configs")]
    assert command.endswith(" experiment=synthetic_failure_best") and command in proc.stdout
    run_cli(*shlex.split(command), "bootstrap=0", cwd=cwd)
    (run,) = run_dirs(cwd, "synthetic_failure")
    config = yaml.safe_load((run / "config.yaml").read_text())
    assert config["model"]["hidden_size"] == best["params"]["model.hidden_size"]
    assert config["task"]["optimizer"]["lr"] == pytest.approx(best["params"]["task.optimizer.lr"])
    assert config["data"]["n_assets"] == 10  # the study's command line came along
    assert "val/auprc" in metrics(run)


@pytest.mark.slow
def test_resume_continues_the_same_study(tuned):
    cwd, args, _, folder = tuned
    before = {t.number: (t.state, t.values) for t in _study(folder / "study.db").trials}
    proc = run_cli("plantml-tune", *args, "tune.n_trials=4", cwd=cwd)
    assert "resuming study 'synthetic_failure': 3 of 4 trials" in proc.stdout + proc.stderr
    after = _study(folder / "study.db").trials
    assert [t.number for t in after] == [0, 1, 2, 3]
    assert {t.number: (t.state, t.values) for t in after[:3]} == before  # finished trials kept
    assert after[3].state != optuna.trial.TrialState.RUNNING
    assert len(pd.read_csv(folder / "trials.csv")) == 4
    # asking again for what the study already holds runs nothing
    proc = run_cli("plantml-tune", *args, "tune.n_trials=4", cwd=cwd)
    assert "already holds 4 trials" in proc.stdout + proc.stderr


@pytest.mark.slow
def test_two_workers_share_one_study(tuned):
    cwd, _, _, _ = tuned
    configs = cwd / "my_configs"
    proc = run_cli(
        "plantml-tune",
        "--config-dir",
        str(configs),
        "hparams_search=tiny_ok",
        *TINY,
        "tune.study_name=two_workers",
        "tune.n_workers=2",
        cwd=cwd,
    )
    assert "2 workers on this machine share the study" in proc.stdout + proc.stderr
    folder = cwd / "outputs" / "tune" / "two_workers"
    trials = _study(folder / "study.db", "two_workers").trials
    assert len(trials) == 4
    assert {t.state for t in trials} == {optuna.trial.TrialState.COMPLETE}
    assert {t.user_attrs["worker"] for t in trials} == {0, 1}
    assert len({t.user_attrs["pid"] for t in trials}) == 2


@pytest.mark.slow
def test_onnx_latency_objective(tuned):
    _, _, _, folder = tuned
    ckpt = next(folder.glob("trials/*/checkpoints/best.ckpt"))
    (latency,) = objective_values({"best_checkpoint": str(ckpt)}, [("onnx_latency_ms", "minimize")])
    assert 0 < latency < 1000


def test_config_errors_before_any_trial(tmp_path):
    proc = run_cli("plantml-tune", "tune.pruner.name=nope", cwd=tmp_path, expect_ok=False)
    assert proc.returncode == 2
    assert "unknown tune.pruner.name='nope'; use one of none, median" in proc.stderr
    proc = run_cli("plantml-tune", "hparams_search=cmapss_rul", cwd=tmp_path, expect_ok=False)
    assert proc.returncode == 2 and "add experiment=cmapss_rul" in proc.stderr
    assert "Traceback" not in proc.stderr


# -- the study runner with a stand-in for train: certain outcomes, no training -------------------
def _report(callbacks, metric: str, values: list[float]) -> None:
    for epoch, value in enumerate(values):
        trainer = SimpleNamespace(
            sanity_checking=False, callback_metrics={metric: value}, current_epoch=epoch
        )
        for callback in callbacks:
            callback.on_validation_end(trainer, None)


def fake_train(cfg, extra_callbacks=()):
    """val/auprc grows with the learning rate; lr=0.5 means Ctrl-C, lr=0.6 Lightning's exit."""
    lr = float(cfg.task.optimizer.lr)
    if lr == 0.5:
        raise KeyboardInterrupt
    if lr == 0.6:
        raise SystemExit(1)
    _report(extra_callbacks, "val/auprc", [lr * (epoch + 1) for epoch in range(3)])
    assert cfg.logger.wandb.group == "fake" and cfg.logger.wandb.name.startswith("fake-trial")
    return {"val/auprc": 3 * lr, "model/parameters": 10 * int(cfg.model.hidden_size)}


def _cfg(tmp_path, monkeypatch, enqueue, **tune):
    monkeypatch.setenv("PLANTML_OUTPUTS", str(tmp_path / "outputs"))
    cfg = api.compose(["logger=wandb"], output_dir=tmp_path / "x", config_name="tune")
    with open_dict(cfg):
        cfg.tune.params = OmegaConf.create(
            {"task.optimizer.lr": "interval(0.0001, 0.9)", "model.hidden_size": "choice(8, 64)"}
        )
        cfg.tune.study_name = "fake"
        cfg.tune.enqueue = enqueue
        for key, value in tune.items():
            cfg.tune[key] = value
    return cfg


def test_hopeless_trial_is_pruned(tmp_path, monkeypatch):
    cfg = _cfg(
        tmp_path,
        monkeypatch,
        [{"task.optimizer.lr": 0.3}, {"task.optimizer.lr": 0.0001}],
        n_trials=2,
        pruner={"name": "median", "n_startup_trials": 1, "n_warmup_steps": 0},
    )
    run_study(cfg, TuneSetup(experiment="synthetic_failure"), train_fn=fake_train)
    first, hopeless = _study(tmp_path / "outputs/tune/fake/study.db", "fake").trials
    assert first.state == optuna.trial.TrialState.COMPLETE
    assert hopeless.state == optuna.trial.TrialState.PRUNED
    assert hopeless.intermediate_values == {0: pytest.approx(0.0001)}  # stopped after epoch 0
    trials = pd.read_csv(tmp_path / "outputs/tune/fake/trials.csv")
    assert "pruned at epoch 0" in trials.loc[1, "fail_reason"]


@pytest.mark.parametrize("lr", [0.5, 0.6])
def test_interrupted_trial_is_failed_and_the_study_resumes(tmp_path, monkeypatch, lr):
    cfg = _cfg(tmp_path, monkeypatch, [{"task.optimizer.lr": 0.2}, {"task.optimizer.lr": lr}])
    with open_dict(cfg):
        cfg.tune.n_trials = 3
    setup = TuneSetup(experiment="synthetic_failure", command="plantml-tune again")
    with pytest.raises(KeyboardInterrupt):
        run_study(cfg, setup, train_fn=fake_train)
    db = tmp_path / "outputs/tune/fake/study.db"
    done, stopped = _study(db, "fake").trials
    assert done.state == optuna.trial.TrialState.COMPLETE
    assert stopped.state == optuna.trial.TrialState.FAIL
    assert stopped.user_attrs["fail_reason"].startswith("interrupted")
    # a trial left RUNNING by a killed process is failed on resume, and not counted
    dead = subprocess.Popen(["true"])
    dead.wait()
    study = _study(db, "fake")
    orphan = study.ask()
    orphan.set_user_attr("host", socket.gethostname())
    orphan.set_user_attr("pid", dead.pid)
    run_study(cfg, setup, train_fn=fake_train)
    trials = _study(db, "fake").trials
    states = [t.state.name for t in trials]
    assert states[:3] == ["COMPLETE", "FAIL", "FAIL"] and trials[0].values == done.values
    assert trials[2].user_attrs["fail_reason"].startswith("interrupted: its process")
    assert states[3:] == ["COMPLETE", "COMPLETE"]  # 3 counted: the interrupted ones run again


def test_multi_objective_pareto_front(tmp_path, monkeypatch, caplog):
    cfg = _cfg(
        tmp_path,
        monkeypatch,
        [
            {"task.optimizer.lr": 0.9, "model.hidden_size": 64},
            {"task.optimizer.lr": 0.3, "model.hidden_size": 8},
            {"task.optimizer.lr": 0.1, "model.hidden_size": 64},  # dominated
        ],
        n_trials=3,
        objectives=[
            {"metric": "val/auprc", "direction": "maximize"},
            {"metric": "model/parameters", "direction": "minimize"},
        ],
    )
    summary = run_study(cfg, TuneSetup(experiment="synthetic_failure"), train_fn=fake_train)
    assert "pruning is not supported for multi-objective" in caplog.text
    folder = tmp_path / "outputs/tune/fake"
    pareto = pd.read_csv(folder / "pareto.csv")
    assert sorted(pareto["trial"]) == [0, 1]
    assert summary["best"]["trial"] == 0  # best by the first objective
    assert (folder / "pareto_front.png").read_bytes()[:4] == b"\x89PNG"
    for name in ("fake_best.yaml", "fake_trial0.yaml", "fake_trial1.yaml"):
        assert (folder / "configs" / "experiment" / name).is_file()
    trials = _study(folder / "study.db", "fake").trials
    assert all(not t.intermediate_values for t in trials)  # no pruning callback
    with open_dict(cfg):
        cfg.tune.objectives = None
    with pytest.raises(ConfigError, match=r"choose another tune\.study_name"):
        run_study(cfg, TuneSetup(experiment="synthetic_failure"), train_fn=fake_train)
