"""Pruning while a trial trains: report the monitored metric every validation epoch."""

from __future__ import annotations

import logging
import math
from typing import Any

import optuna
from lightning.pytorch.callbacks import Callback

log = logging.getLogger(__name__)


class PruningCallback(Callback):
    """Reports ``metric`` to the Optuna trial after every validation epoch and stops
    the trial (``optuna.TrialPruned``) when the study's pruner says so.

    The sanity check before training and the validation passes after it are skipped;
    the step is the epoch. A NaN value
    stops the trial at once as a failure: a diverged trial will not come back.
    """

    def __init__(self, trial: optuna.trial.BaseTrial, metric: str):
        self.trial = trial
        self.metric = metric
        self._warned = False

    def on_validation_end(self, trainer: Any, pl_module: Any) -> None:
        state = getattr(trainer, "state", None)
        if trainer.sanity_checking or (state is not None and state.fn != "fit"):
            return  # the sanity check, or the scoring of the best checkpoint after training
        value = trainer.callback_metrics.get(self.metric)
        if value is None:
            if not self._warned:
                log.warning(
                    "pruning: %r is not logged during validation, so this trial cannot be "
                    "pruned; logged metrics: %s",
                    self.metric,
                    ", ".join(sorted(trainer.callback_metrics)) or "none",
                )
                self._warned = True
            return
        value = float(value)
        epoch = int(trainer.current_epoch)
        if math.isnan(value):
            raise FloatingPointError(f"{self.metric} is NaN at epoch {epoch} (training diverged)")
        self.trial.report(value, step=epoch)
        if self.trial.should_prune():
            raise optuna.TrialPruned(f"pruned at epoch {epoch} with {self.metric}={value:.4g}")
