"""Failure-within-horizon classification for rare failures."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from lightning.pytorch.trainer.states import TrainerFn
from torch import nn

from plantml.evaluation.metrics import best_f1_threshold
from plantml.tasks.base import SensorTask
from plantml.tasks.losses import classification_loss


class FailureTask(SensorTask):
    """Predict the probability that the asset fails within the horizon.

    Args:
        loss: ``bce``, ``weighted_bce`` (positives weighted by ``pos_weight``)
            or ``focal``.
        pos_weight: negatives / positives among training windows (the data
            module computes it when the config says ``auto``).
        focal_gamma, focal_alpha: focal-loss parameters.
        threshold: alarm threshold on the probability; ``auto`` picks the
            best-F1 threshold on validation after every validation pass and
            keeps it in the checkpoint.
    """

    kind = "failure"
    monitor = "val/auprc"

    def __init__(
        self,
        model: nn.Module,
        optimizer: Callable,
        scheduler: Callable | None = None,
        condition_names: list[str] | None = None,
        loss: str = "bce",
        pos_weight: float | None = None,
        focal_gamma: float = 2.0,
        focal_alpha: float | None = 0.25,
        threshold: float | str = "auto",
    ):
        super().__init__(model, optimizer, scheduler, condition_names)
        self.loss_fn = classification_loss(loss, pos_weight, focal_gamma, focal_alpha)
        self.auto_threshold = threshold == "auto"
        self.register_buffer(
            "threshold", torch.tensor(0.5 if self.auto_threshold else float(threshold))
        )

    def postprocess(self, output: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(output.float())

    def soft_loss(self, output: torch.Tensor, teacher_output: torch.Tensor) -> torch.Tensor:
        """Cross-entropy against the teacher's softened probabilities (Hinton et al. 2015)."""
        t = self.distill_temperature
        soft_target = torch.sigmoid(teacher_output.float() / t)
        return F.binary_cross_entropy_with_logits(output.float() / t, soft_target) * t * t

    def threshold_value(self) -> float:
        return float(self.threshold)

    def on_eval_results(self, split: str, pred: torch.Tensor, y: torch.Tensor) -> None:
        fitting = self.trainer.state.fn == TrainerFn.FITTING
        if self.auto_threshold and fitting and not self.trainer.sanity_checking:
            self.threshold.fill_(best_f1_threshold(pred, y))
