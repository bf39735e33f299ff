"""Losses for rare failures and for RUL."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from plantml.errors import ConfigError


class FocalLoss(nn.Module):
    """Binary focal loss (Lin et al. 2017) on logits: down-weights easy windows.

    ``alpha`` weights the positive class (None: no class weighting), ``gamma``
    focuses on hard examples (0 gives weighted BCE).
    """

    def __init__(self, gamma: float = 2.0, alpha: float | None = 0.25):
        super().__init__()
        if gamma < 0:
            raise ConfigError(f"task.focal_gamma must be >= 0, got {gamma}")
        if alpha is not None and not 0 < alpha < 1:
            raise ConfigError(f"task.focal_alpha must be in (0, 1) or null, got {alpha}")
        self.gamma, self.alpha = gamma, alpha

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        bce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
        p_t = torch.exp(-bce)
        loss = (1 - p_t) ** self.gamma * bce
        if self.alpha is not None:
            loss = (self.alpha * target + (1 - self.alpha) * (1 - target)) * loss
        return loss.mean()


def classification_loss(
    name: str, pos_weight: float | None = None, gamma: float = 2.0, alpha: float | None = 0.25
) -> nn.Module:
    """``bce``, ``weighted_bce`` (``pos_weight`` = negatives / positives) or ``focal``."""
    if name == "bce":
        return nn.BCEWithLogitsLoss()
    if name == "weighted_bce":
        return nn.BCEWithLogitsLoss(pos_weight=torch.tensor(float(pos_weight)))
    if name == "focal":
        return FocalLoss(gamma, alpha)
    raise ConfigError(f"unknown task.loss {name!r}; use bce, weighted_bce or focal")


def regression_loss(name: str) -> nn.Module:
    """``mse``, ``huber`` or ``mae``."""
    losses = {"mse": nn.MSELoss, "huber": nn.HuberLoss, "mae": nn.L1Loss}
    if name not in losses:
        raise ConfigError(f"unknown task.loss {name!r}; use {', '.join(losses)}")
    return losses[name]()
