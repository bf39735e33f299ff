"""last.ckpt is the last epoch; a run resumed from it is the run an uninterrupted one would have been."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from plantml.checkpointing import LastCheckpoint, adopt_best
from plantml.errors import CheckpointError, ConfigError
from tests.conftest import REPO
from tests.integration.helpers import run_cli
from tests.integration.resume_helpers import FAST, Crash, epoch_metrics, train_in_process

BATCHES = 4  # trainer.limit_train_batches in FAST: optimizer steps per epoch


def load(path):
    return torch.load(path, map_location="cpu", weights_only=False)


def test_last_checkpoint_is_the_last_epoch_while_best_is_earlier(tmp_path):
    # lr 0: every epoch scores the same, so the best checkpoint stays at epoch 0 (ties keep
    # the first) while Lightning's save_last=True would also leave last.ckpt at epoch 0
    train_in_process([*FAST, "task.optimizer.lr=0.0", "evaluate=false"], tmp_path)
    last, best = load(tmp_path / "checkpoints/last.ckpt"), load(tmp_path / "checkpoints/best.ckpt")
    assert last["epoch"] == 2 and last["global_step"] == 3 * BATCHES  # 3 epochs: 0, 1, 2
    assert best["epoch"] == 0
    assert not (tmp_path / "checkpoints/last.ckpt.partial").exists()


def test_resume_mid_epoch_is_exact(tmp_path):
    """Step checkpoints every 2 steps, crash after step 7 (epoch 1, batch 3); resume from step 6.

    With a learning-rate schedule (halved every epoch), which the resumed run must keep.
    """
    steps = [
        *FAST,
        "callbacks.last_checkpoint.every_n_train_steps=2",
        "evaluate=false",
        "task.scheduler={_target_:torch.optim.lr_scheduler.StepLR,_partial_:true,step_size:1,gamma:0.5}",
    ]
    full = train_in_process(steps, tmp_path / "full")
    assert full["epochs"] == 3
    with pytest.raises(Crash):
        train_in_process(steps, tmp_path / "crashed", stop_at=BATCHES + 3)
    last = tmp_path / "crashed/checkpoints/last.ckpt"
    state = load(last)
    assert (state["epoch"], state["global_step"]) == (1, BATCHES + 2)
    (loader,) = state["loops"]["fit_loop"]["state_dict"]["combined_loader"]
    assert loader["epoch"] == 1 and loader["batches_done"] == 2
    train_in_process([*steps, f"ckpt_path={last}"], tmp_path / "resumed")
    want, got = epoch_metrics(tmp_path / "full"), epoch_metrics(tmp_path / "resumed")
    assert sorted(got) == [1, 2]
    for epoch in got:
        assert got[epoch] == pytest.approx(want[epoch], rel=1e-6, abs=1e-7), epoch
    final = load(tmp_path / "resumed/checkpoints/last.ckpt")
    assert final["global_step"] == 3 * BATCHES  # the consumed batches were not trained twice


@pytest.mark.slow
def test_resume_keeps_the_best_checkpoint_and_early_stopping_state(tmp_path):
    """lr 0: every epoch scores the same, so the best stays epoch 0 and, with patience 1,
    early stopping ends the run after epoch 1. Resumed after epoch 0 in a new folder, a
    run that lost either state would take epoch 1 as an improvement and train on."""
    flat = [*FAST, "task.optimizer.lr=0.0", "evaluate=false", "callbacks.early_stopping.patience=1"]
    assert train_in_process(flat, tmp_path / "full")["epochs"] == 2  # stopped after epoch 1
    with pytest.raises(Crash):
        train_in_process(flat, tmp_path / "crashed", stop_at=2 * BATCHES)
    last = tmp_path / "crashed/checkpoints/last.ckpt"
    assert load(last)["epoch"] == 0  # the crash came before epoch 1's checkpoint
    metrics = train_in_process([*flat, f"ckpt_path={last}"], tmp_path / "resumed")
    assert metrics["epochs"] == 2
    assert metrics["best_checkpoint"] == str(tmp_path / "resumed/checkpoints/best.ckpt")
    assert load(tmp_path / "resumed/checkpoints/best.ckpt")["epoch"] == 0
    assert load(tmp_path / "resumed/checkpoints/last.ckpt")["epoch"] == 1


def test_a_failed_write_leaves_the_previous_last_checkpoint(tmp_path, monkeypatch):
    import plantml.checkpointing as checkpointing

    real = checkpointing.replace_atomically
    calls = []

    def fail_second(tmp, target):
        calls.append(target)
        if len(calls) == 2:
            raise OSError("disk full")
        real(tmp, target)

    monkeypatch.setattr(checkpointing, "replace_atomically", fail_second)
    with pytest.raises(OSError, match="disk full"):
        train_in_process([*FAST, "evaluate=false"], tmp_path)
    assert load(tmp_path / "checkpoints/last.ckpt")["epoch"] == 0  # whole, and the last good one
    assert (tmp_path / "checkpoints/last.ckpt.partial").is_file()


def test_last_checkpoint_options_are_checked(tmp_path):
    with pytest.raises(ConfigError, match="every_n_train_steps must be a whole number"):
        LastCheckpoint(tmp_path, every_n_train_steps=-3)


def test_adopt_best_copies_the_best_file_and_rewrites_paths(tmp_path):
    old, new = tmp_path / "old", tmp_path / "new"
    old.mkdir()
    (old / "best.ckpt").write_bytes(b"weights")
    state = {
        "dirpath": str(old),
        "best_model_path": str(old / "best.ckpt"),
        "best_model_score": torch.tensor(0.7),
        "best_k_models": {str(old / "best.ckpt"): torch.tensor(0.7)},
        "kth_best_model_path": str(old / "best.ckpt"),
        "last_model_path": str(old / "last.ckpt"),
    }
    adopt_best(state, new)
    assert (new / "best.ckpt").read_bytes() == b"weights"
    assert state["best_model_path"] == str(new / "best.ckpt") == state["kth_best_model_path"]
    assert list(state["best_k_models"]) == [str(new / "best.ckpt")]
    assert state["dirpath"] == str(new) and float(state["best_model_score"]) == pytest.approx(0.7)
    (old / "best.ckpt").unlink()
    state["dirpath"] = str(old)
    state["best_model_path"] = str(old / "best.ckpt")
    with pytest.raises(CheckpointError, match=r"best model .* is gone"):
        adopt_best(state, tmp_path / "other")


# -- a real crash: SIGKILL, then plantml-train ckpt_path=.../last.ckpt ----------------------------


def killed_run(folder, step: int, overrides: list[str]) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "tests.integration.resume_helpers",
            str(folder),
            str(step),
            *overrides,
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        cwd=folder.parent,
    )


@pytest.mark.slow
@pytest.mark.parametrize(
    ("kill_step", "every_n", "resumed_from"),
    [(2 * BATCHES + 1, 0, (1, 2 * BATCHES)), (2 * BATCHES + 3, 2, (2, 2 * BATCHES + 2))],
    ids=["epoch_boundary", "mid_epoch"],
)
def test_sigkill_then_resume_gives_the_uninterrupted_run(
    tmp_path, kill_step, every_n, resumed_from
):
    """5 epochs; SIGKILL in epoch 2 (step checkpoints every_n); resume with the CLI."""
    overrides = [
        *FAST,
        "trainer.max_epochs=5",
        f"callbacks.last_checkpoint.every_n_train_steps={every_n}",
    ]
    run_cli("plantml-train", *overrides, f"hydra.run.dir={tmp_path / 'full'}", cwd=tmp_path)
    proc = killed_run(tmp_path / "killed", kill_step, overrides)
    assert proc.returncode == -9, proc.stderr[-3000:]  # killed by SIGKILL, not finished
    last = tmp_path / "killed/checkpoints/last.ckpt"
    state = load(last)  # whole: written atomically
    assert (state["epoch"], state["global_step"]) == resumed_from
    run_cli(
        "plantml-train",
        *overrides,
        f"ckpt_path={last}",
        f"hydra.run.dir={tmp_path / 'resumed'}",
        cwd=tmp_path,
    )
    want, got = epoch_metrics(tmp_path / "full"), epoch_metrics(tmp_path / "resumed")
    assert sorted(got) == [2, 3, 4, 5]  # 5: the final validation of the best checkpoint
    for epoch in got:
        assert got[epoch] == pytest.approx(want[epoch], rel=1e-6, abs=1e-7), epoch
    full = json.loads((tmp_path / "full/metrics.json").read_text())
    resumed = json.loads((tmp_path / "resumed/metrics.json").read_text())
    for key in ("val/auprc", "val/f1", "val/threshold", "test/auprc", "epochs"):
        assert resumed[key] == pytest.approx(full[key], rel=1e-6), key
    assert (
        load(tmp_path / "resumed/checkpoints/best.ckpt")["epoch"]
        == (load(tmp_path / "full/checkpoints/best.ckpt")["epoch"])
    )
