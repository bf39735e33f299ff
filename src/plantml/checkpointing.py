"""``last.ckpt``: the latest training state, written atomically, from which a run resumes exactly.

Lightning's ``ModelCheckpoint(save_top_k=1, save_last=True)`` refreshes
``last.ckpt`` only in an epoch whose monitored metric improved, so after a few
epochs without improvement ``last.ckpt`` is the best epoch, not the last one,
and a resumed run silently repeats epochs. :class:`LastCheckpoint` writes it
itself:

- at the end of every training epoch (after validation, early stopping and the
  best checkpoint have updated their state), whatever the best checkpoint does;
- optionally every ``every_n_train_steps`` optimizer steps inside an epoch (long
  epochs); the checkpoint then holds the position within the epoch (the training
  loader's state, :class:`~plantml.data.sampling.ResumableLoader`);
- atomically: into ``last.ckpt.partial`` in the same folder, flushed to disk,
  then renamed over ``last.ckpt``. A crash leaves the previous ``last.ckpt`` whole.

Its own state, saved in every checkpoint, is what Lightning does not save but a
run's trajectory depends on: the random states of Python, numpy and torch (CPU
and CUDA; dropout masks, anything seeded globally). Restoring them, the
optimizer, scheduler, loops, sampler position, early stopping and best
checkpoint gives the resumed run the epochs an uninterrupted run would have had.

A resumed run writes a new run folder; :meth:`LastCheckpoint.on_load_checkpoint`
carries the interrupted run's best checkpoint (file and score) into it, so the
best checkpoint keeps competing against the same score.
"""

from __future__ import annotations

import logging
import os
import random
import shutil
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import Checkpoint, ModelCheckpoint

from plantml.errors import CheckpointError, ConfigError

log = logging.getLogger(__name__)


RUN_CHECKPOINTS = "a training run keeps them in <run folder>/checkpoints/ (best.ckpt, last.ckpt)"


def read_checkpoint(path: str | Path, purpose: str = "evaluate") -> dict[str, Any]:
    """Load a checkpoint file, or raise :class:`CheckpointError` saying which file and what to do.

    ``purpose`` ``resume`` also requires the training state (optimizer, loops) that
    only a full training checkpoint holds.
    """
    path = Path(str(path)).expanduser()
    if not path.is_file():
        where = "is a folder" if path.is_dir() else "not found"
        raise CheckpointError(f"checkpoint {str(path)!r} {where}; {RUN_CHECKPOINTS}")
    if path.stat().st_size == 0:
        raise CheckpointError(
            f"checkpoint {path} is empty (0 bytes): the write was cut off; use the run's other "
            f"checkpoint or train again ({RUN_CHECKPOINTS})"
        )
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # torch raises RuntimeError, UnpicklingError, EOFError, ...
        text = str(exc).strip()
        first = text.splitlines()[0].split(". ")[0][:160] if text else type(exc).__name__
        raise CheckpointError(
            f"cannot read checkpoint {path} ({path.stat().st_size} bytes): it is truncated or not "
            f"a checkpoint ({first}); use a checkpoint written by plantml-train: {RUN_CHECKPOINTS}"
        ) from None
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise CheckpointError(
            f"{path} is a torch file but not a Lightning checkpoint (no model state_dict); "
            f"use a checkpoint written by plantml-train: {RUN_CHECKPOINTS}"
        )
    if purpose == "resume" and not {"optimizer_states", "loops"} <= set(checkpoint):
        raise CheckpointError(
            f"{path} holds the model weights but not the training state (optimizer, epoch), so "
            "training cannot resume from it; resume from the run's checkpoints/last.ckpt"
        )
    return checkpoint


def resume_path(ckpt_path: str | Path) -> Path:
    """The checkpoint to resume from: the file, or ``checkpoints/last.ckpt`` of a run folder."""
    path = Path(str(ckpt_path)).expanduser()
    for candidate in (path / "checkpoints" / "last.ckpt", path / "last.ckpt"):
        if path.is_dir() and candidate.is_file():
            return candidate
    return path


def load_weights(module: torch.nn.Module, checkpoint: dict[str, Any], path: Path, fix: str) -> None:
    """Load the checkpoint's weights into ``module``; a CheckpointError if they do not fit.

    ``fix`` says what to do about a mismatch (it depends on the command).
    """
    try:
        missing, unexpected = module.load_state_dict(checkpoint["state_dict"], strict=False)
    except RuntimeError as exc:  # shapes differ
        sizes = [line.strip() for line in str(exc).splitlines() if "size mismatch" in line]
        raise CheckpointError(
            f"{path} does not fit the model built from the config ({'; '.join(sizes[:3])}); {fix}"
        ) from None
    if missing or unexpected:
        raise CheckpointError(
            f"{path} does not fit the model built from the config (missing {missing[:5]}, "
            f"unexpected {unexpected[:5]}); {fix}"
        )


def check_same_run(checkpoint: dict[str, Any], path: Path, seed: int, data: dict[str, Any]) -> None:
    """A CheckpointError when this run's seed or training data differ from the checkpoint's run.

    ``data``: ``{"fingerprint": ..., "n_train_windows": ...}`` of this run. Resuming
    continues one run; with other data or another seed it would silently be another.
    """
    stored = checkpoint.get("plantml") or {}
    before = {
        "seed": (stored.get("config") or {}).get("seed"),
        "data fingerprint": (stored.get("data") or {}).get("fingerprint"),
        "training windows": (stored.get("data") or {}).get("n_train_windows"),
    }
    now = {
        "seed": seed,
        "data fingerprint": data.get("fingerprint"),
        "training windows": data.get("n_train_windows"),
    }
    differ = [k for k in before if before[k] is not None and before[k] != now[k]]
    if differ:
        shown = "; ".join(
            f"{k}: {str(before[k])[:16]} then, {str(now[k])[:16]} now" for k in differ
        )
        raise CheckpointError(
            f"{path} was written by a run with other data or settings ({shown}); resuming "
            "continues that run: give the same config it had (its config.yaml), or start a new "
            "run without ckpt_path"
        )


def random_states() -> dict[str, Any]:
    """The global random states of Python, numpy and torch (CPU and every CUDA device).

    Plain types and tensors only, so that checkpoints load with ``weights_only=True``.
    """
    kind, key, pos, has_gauss, gauss = np.random.get_state()
    states = {
        "python": random.getstate(),
        "numpy": [kind, key.tolist(), int(pos), int(has_gauss), float(gauss)],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def set_random_states(states: dict[str, Any]) -> None:
    """Restore what :func:`random_states` returned."""
    random.setstate(states["python"])
    kind, key, pos, has_gauss, gauss = states["numpy"]
    np.random.set_state((kind, np.asarray(key, dtype=np.uint32), pos, has_gauss, gauss))
    torch.set_rng_state(states["torch"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


def replace_atomically(tmp: Path, target: Path) -> None:
    """Flush ``tmp`` to disk and rename it over ``target`` (same folder: one atomic step)."""
    with open(tmp, "rb+") as handle:
        os.fsync(handle.fileno())
    os.replace(tmp, target)
    try:  # make the rename itself durable
        fd = os.open(target.parent, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class LastCheckpoint(Checkpoint):
    """Writes ``<dirpath>/<filename>.ckpt`` every epoch (and every N steps); see the module doc.

    Args:
        dirpath: the checkpoint folder (``<run>/checkpoints``).
        filename: file name without ``.ckpt``.
        every_n_train_steps: also write it every N optimizer steps inside an epoch
            (null or 0: only at epoch ends).
    """

    def __init__(
        self, dirpath: str | Path, filename: str = "last", every_n_train_steps: int | None = None
    ):
        steps = every_n_train_steps or 0
        if not isinstance(steps, int) or isinstance(steps, bool) or steps < 0:
            raise ConfigError(
                "callbacks.last_checkpoint.every_n_train_steps must be a whole number >= 0 "
                f"(0 or null: only at the end of each epoch), got {every_n_train_steps!r}"
            )
        self.dirpath = Path(dirpath)
        self.filename = filename
        self.every_n_train_steps = steps
        self.path = self.dirpath / f"{filename}.ckpt"
        self.saves = 0  # checkpoints written by this process

    @property
    def state_key(self) -> str:
        return "LastCheckpoint"

    def save(self, trainer: L.Trainer) -> None:
        """Write the trainer's state to ``last.ckpt`` atomically (every rank calls this)."""
        tmp = self.path.with_name(self.path.name + ".partial")
        if trainer.is_global_zero:
            self.dirpath.mkdir(parents=True, exist_ok=True)
        trainer.save_checkpoint(tmp)  # collective; rank 0 writes
        if trainer.is_global_zero:
            replace_atomically(tmp, self.path)
        trainer.strategy.barrier("LastCheckpoint.save")
        self.saves += 1

    def _saving(self, trainer: L.Trainer) -> bool:
        from lightning.pytorch.trainer.states import TrainerFn

        return (
            not trainer.fast_dev_run
            and trainer.state.fn == TrainerFn.FITTING
            and not trainer.sanity_checking
        )

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        n = self.every_n_train_steps
        if not n or not self._saving(trainer) or trainer.global_step % n:
            return
        # the epoch's last batch: the epoch-end checkpoint follows validation (a step
        # checkpoint here would resume past this epoch's validation)
        if trainer.fit_loop.epoch_loop.batch_progress.is_last_batch:
            return
        self.save(trainer)

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        if self._saving(trainer):
            self.save(trainer)

    # -- what Lightning does not keep --------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {"random_states": random_states()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if "random_states" in state_dict:
            set_random_states(state_dict["random_states"])

    def on_load_checkpoint(self, trainer, pl_module, checkpoint: dict[str, Any]) -> None:
        """Carry the interrupted run's best checkpoint into this run's folder (see module doc)."""
        for callback in trainer.checkpoint_callbacks:
            if isinstance(callback, ModelCheckpoint) and callback.dirpath:
                state = checkpoint.get("callbacks", {}).get(callback.state_key)
                if state:
                    adopt_best(state, Path(callback.dirpath), trainer.is_global_zero)


def adopt_best(state: dict[str, Any], dirpath: Path, copy: bool = True) -> None:
    """Rewrite a ModelCheckpoint state of another folder for ``dirpath``, copying its files.

    ``state`` (``ModelCheckpoint.state_dict()``) is changed in place: its best
    files are copied into ``dirpath`` (when ``copy``) and every path points there.
    """
    old = state.get("dirpath")
    if not old or Path(old).resolve() == dirpath.resolve():
        return
    moved: dict[str, str] = {}
    for path in [state.get("best_model_path"), *(state.get("best_k_models") or {})]:
        if not path or path in moved:
            continue
        target = dirpath / Path(path).name
        if copy and Path(path).is_file():
            dirpath.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, target)
        elif copy:
            raise CheckpointError(
                f"the checkpoint's best model {path} is gone; resuming needs the interrupted run's "
                "folder as it was (checkpoints/best.ckpt next to last.ckpt)"
            )
        moved[path] = str(target)
    state["dirpath"] = str(dirpath)
    state["best_model_path"] = moved.get(state.get("best_model_path"), "")
    state["best_k_models"] = {moved[k]: v for k, v in (state.get("best_k_models") or {}).items()}
    state["kth_best_model_path"] = moved.get(state.get("kth_best_model_path"), "")
    state["last_model_path"] = ""
    log.info("resumed: best checkpoint %s carried into %s", old, dirpath)
