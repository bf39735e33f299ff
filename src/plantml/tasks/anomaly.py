"""Anomaly detection by reconstruction: learn normal operation, alarm on what it cannot rebuild."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
from lightning.pytorch.trainer.states import TrainerFn
from torch import nn

from plantml.errors import ConfigError, DataError
from plantml.evaluation.anomaly import pot_threshold, quantile_threshold
from plantml.models.autoencoder import ReconstructionScore, check_score, reconstruction_error
from plantml.tasks.base import SensorTask

THRESHOLDS = ("quantile", "pot")


class AnomalyTask(SensorTask):
    """Train an autoencoder on normal windows; score windows by reconstruction error.

    ``forward(x)`` maps ``(batch, time, channels)`` to the anomaly score
    ``(batch,)``: the mean error over time and channels. Evaluation and export
    see that score (``postprocess`` is the identity); an alarm is ``score >=
    threshold``. Windows labelled 1 (anomalous) are left out of the loss, in
    training and in ``val/loss``.

    Args:
        model: an autoencoder, ``(batch, time, channels)`` → the same shape.
        score: ``mse`` (squared error) or ``mae`` (absolute error).
        threshold: ``quantile`` (the ``quantile``-quantile of normal
            validation scores), ``pot`` (peaks over threshold: a generalized
            Pareto tail above the ``pot_level`` quantile, extrapolated to a
            false-alarm probability ``pot_risk``) or a fixed number. The first
            two are recalibrated after every validation pass while fitting and
            kept in the checkpoint.
    """

    kind = "anomaly"
    monitor = "val/loss"

    def __init__(
        self,
        model: nn.Module,
        optimizer: Callable,
        scheduler: Callable | None = None,
        condition_names: list[str] | None = None,
        score: str = "mse",
        threshold: float | str = "quantile",
        quantile: float = 0.99,
        pot_level: float = 0.98,
        pot_risk: float = 1e-3,
    ):
        super().__init__(model, optimizer, scheduler, condition_names)
        self.score = check_score(score)
        if isinstance(threshold, str) and threshold not in THRESHOLDS:
            raise ConfigError(
                f"unknown task.threshold {threshold!r}; use quantile, pot or a number"
            )
        if not 0.0 < quantile < 1.0:
            raise ConfigError(f"task.quantile must be in (0, 1), got {quantile}")
        if not 0.0 < pot_level < 1.0 or not 0.0 < pot_risk < 1.0 - pot_level:
            raise ConfigError(
                f"task.pot_level={pot_level} must be in (0, 1) and task.pot_risk={pot_risk} in "
                "(0, 1 - pot_level); e.g. pot_level=0.98 pot_risk=1e-3"
            )
        self.threshold_method = threshold if isinstance(threshold, str) else "fixed"
        self.quantile, self.pot_level, self.pot_risk = float(quantile), pot_level, pot_risk
        # inf until calibrated: no alarms rather than alarms on an arbitrary score
        start = math.inf if isinstance(threshold, str) else float(threshold)
        self.register_buffer("threshold", torch.tensor(start))

    # -- scores ----------------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(batch, time, channels)`` → anomaly score ``(batch,)``."""
        return reconstruction_error(x, self.model(x), self.score).mean(dim=(1, 2))

    def step_scores(self, x: torch.Tensor) -> torch.Tensor:
        """Score per time step ``(batch, time)``: where in the window the error sits."""
        return reconstruction_error(x, self.model(x), self.score).mean(dim=-1)

    def export_module(self) -> nn.Module:
        """The scorer as one module, window → score ``(batch,)`` (what ONNX export wraps)."""
        return ReconstructionScore(self.model, self.score)

    def loss(self, output: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Mean score of the normal windows (label 0); 0, with a gradient, if there are none."""
        normal = y < 0.5
        if not bool(normal.any()):
            return output.float().sum() * 0.0
        return output.float()[normal].mean()

    def threshold_value(self) -> float:
        return float(self.threshold)

    def calibrate(self, normal_scores: torch.Tensor | np.ndarray) -> float:
        """The alarm threshold from scores ``(n,)`` of normal windows, per ``threshold``."""
        scores = np.asarray(torch.as_tensor(normal_scores).double().cpu())
        if self.threshold_method == "pot":
            return pot_threshold(scores, self.pot_level, self.pot_risk)
        return quantile_threshold(scores, self.quantile)

    def set_teacher(self, teacher, alpha: float = 0.5, temperature: float = 1.0) -> None:
        if teacher is not None:
            raise ConfigError(
                "distillation is not available for the anomaly task (a reconstruction has no "
                "soft target); choose an export recipe without a distill step (export=fp32 or int8)"
            )
        super().set_teacher(None)

    # -- evaluation ------------------------------------------------------------------
    def _eval_step(self, batch: dict, prefix: str) -> None:
        output = self(batch["x"])
        n_normal = int((batch["y"] < 0.5).sum())
        if n_normal:  # the loss is over normal windows: weight batches by how many they hold
            loss = self.loss(output, batch["y"])
            self.log(f"{prefix}/loss", loss, on_epoch=True, batch_size=n_normal, sync_dist=True)
        self._outputs.append(
            {
                "pred": self.postprocess(output).detach().float().cpu(),
                "y": batch["y"].detach().float().cpu(),
                "condition": batch["condition"].detach().cpu(),
                "asset": batch["asset"].detach().cpu(),
                "end": batch["end"].detach().cpu(),
            }
        )

    def _gathered(self) -> dict[str, torch.Tensor]:
        """All windows of the pass, ordered by asset and window end (events are runs in time)."""
        out = super()._gathered()
        if out:
            order = np.lexsort((out["end"].numpy(), out["asset"].numpy()))
            out = {k: v[torch.from_numpy(order)] for k, v in out.items()}
        return out

    def on_eval_results(self, split: str, pred: torch.Tensor, y: torch.Tensor) -> None:
        fitting = self.trainer.state.fn == TrainerFn.FITTING
        if self.threshold_method == "fixed" or not fitting or self.trainer.sanity_checking:
            return
        normal = pred[y < 0.5]
        if not len(normal):
            raise DataError(
                "the validation split has no normal (label 0) windows to calibrate the alarm "
                "threshold on; change data.split_by so validation keeps normal operation, "
                "or set task.threshold to a number"
            )
        self.threshold.fill_(self.calibrate(normal))
