"""Remaining-useful-life regression."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from plantml.tasks.base import SensorTask
from plantml.tasks.losses import regression_loss


class RULTask(SensorTask):
    """Predict RUL (in the data's time units) at each window's end.

    The model learns ``rul / target_scale`` (with a capped RUL, the cap) so
    that its outputs stay near [0, 1]; predictions are scaled back and
    clipped at 0.

    Args:
        loss: ``mse``, ``huber`` or ``mae``.
        target_scale: divisor of the target during training.
    """

    kind = "rul"
    monitor = "val/rmse"

    def __init__(
        self,
        model: nn.Module,
        optimizer: Callable,
        scheduler: Callable | None = None,
        condition_names: list[str] | None = None,
        loss: str = "mse",
        target_scale: float = 1.0,
    ):
        super().__init__(model, optimizer, scheduler, condition_names)
        self.loss_fn = regression_loss(loss)
        self.register_buffer("target_scale", torch.tensor(float(target_scale)))

    def encode_target(self, y: torch.Tensor) -> torch.Tensor:
        return y / self.target_scale

    def postprocess(self, output: torch.Tensor) -> torch.Tensor:
        return (output.float() * self.target_scale).clamp_min(0.0)
