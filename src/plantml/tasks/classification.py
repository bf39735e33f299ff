"""Fault classification: which of K classes (normal, inner race, ball, outer race …) a window shows."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from plantml.errors import ConfigError
from plantml.tasks.base import SensorTask


class ClassProbabilities(nn.Module):
    """A model plus softmax: window ``(batch, time, channels)`` → probabilities ``(batch, K)``."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, window: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.model(window).float(), dim=-1)


class ClassificationTask(SensorTask):
    """Multi-class classification of windows with cross-entropy.

    ``forward(x)`` maps ``(batch, time, channels)`` to logits ``(batch, K)``;
    ``postprocess`` turns them into class probabilities ``(batch, K)``, which
    evaluation collects (the predicted class is the argmax). Targets are the
    integer class codes of :func:`plantml.data.targets.class_targets`.

    Args:
        model: maps ``(batch, time, channels)`` to ``(batch, K)`` logits.
        class_names: names of the codes 0 … K-1 (reports, predictions, bundle).
        label_smoothing: cross-entropy label smoothing in [0, 1).
    """

    kind = "class"
    monitor = "val/accuracy"

    def __init__(
        self,
        model: nn.Module,
        optimizer: Callable,
        scheduler: Callable | None = None,
        condition_names: list[str] | None = None,
        class_names: list[str] | None = None,
        label_smoothing: float = 0.0,
    ):
        super().__init__(model, optimizer, scheduler, condition_names)
        if not 0.0 <= label_smoothing < 1.0:
            raise ConfigError(f"task.label_smoothing must be in [0, 1), got {label_smoothing}")
        self.class_names = [str(c) for c in class_names or []]
        self.label_smoothing = float(label_smoothing)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(batch, time, channels)`` → logits ``(batch, K)`` (no squeeze)."""
        return self.model(x)

    def loss(self, output: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(output.float(), y.long(), label_smoothing=self.label_smoothing)

    def soft_loss(self, output: torch.Tensor, teacher_output: torch.Tensor) -> torch.Tensor:
        """KL divergence to the teacher's softened class distribution."""
        t = self.distill_temperature
        return (
            F.kl_div(
                F.log_softmax(output.float() / t, dim=-1),
                F.softmax(teacher_output.float() / t, dim=-1),
                reduction="batchmean",
            )
            * t
            * t
        )

    def postprocess(self, output: torch.Tensor) -> torch.Tensor:
        """Logits ``(batch, K)`` → class probabilities ``(batch, K)``."""
        return torch.softmax(output.float(), dim=-1)

    def export_module(self) -> nn.Module:
        """Window → class probabilities ``(batch, K)`` (what ONNX export wraps)."""
        return ClassProbabilities(self.model)
