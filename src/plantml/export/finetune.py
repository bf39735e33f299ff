"""Short training runs after compression: fine-tune a pruned model, train a student."""

from __future__ import annotations

import copy
import functools
import logging

import torch
from lightning.pytorch.callbacks import Callback, RichProgressBar
from omegaconf import DictConfig, OmegaConf, open_dict

from plantml.builders import build_trainer
from plantml.errors import ConfigError

log = logging.getLogger(__name__)


class KeepBest(Callback):
    """Remembers the weights of the best validation epoch and restores them at the end."""

    def __init__(self, monitor: str, mode: str):
        self.monitor, self.mode = monitor, mode
        self.best: float | None = None
        self.state: dict | None = None

    def on_validation_end(self, trainer, pl_module) -> None:
        if trainer.sanity_checking or self.monitor not in trainer.callback_metrics:
            return
        value = float(trainer.callback_metrics[self.monitor])
        better = self.best is None or (
            value < self.best if self.mode == "min" else value > self.best
        )
        if better and value == value:  # NaN never wins
            self.best, self.state = value, copy.deepcopy(pl_module.state_dict())

    def on_fit_end(self, trainer, pl_module) -> None:
        if self.state is not None:
            pl_module.load_state_dict(self.state)


def fit(
    task, datamodule, cfg: DictConfig, epochs: int, lr: float | None = None, what: str = ""
) -> dict:
    """Train ``task`` for ``epochs`` on the run's data and trainer settings; keep the best epoch.

    ``lr`` replaces the optimizer's learning rate (fine-tuning usually wants a
    smaller one). Returns ``{"epochs", "best": {monitor: value}}``.
    """
    epochs = int(epochs)
    if epochs < 1:
        raise ConfigError(f"{what or 'fine-tuning'} needs epochs >= 1, got {epochs}")
    if lr is not None:
        if float(lr) <= 0:
            raise ConfigError(f"{what or 'fine-tuning'} lr must be > 0, got {lr}")
        task.optimizer_factory = functools.partial(task.optimizer_factory, lr=float(lr))
    trainer_cfg = OmegaConf.create({"trainer": OmegaConf.to_container(cfg.trainer, resolve=True)})
    with open_dict(trainer_cfg):
        trainer_cfg.trainer.max_epochs = epochs
        trainer_cfg.trainer.min_epochs = 1
        trainer_cfg.trainer.enable_checkpointing = False
        trainer_cfg.trainer.enable_model_summary = False
        trainer_cfg.trainer.default_root_dir = None
    monitor, mode = cfg.task.get("monitor", task.monitor), cfg.task.get("mode", "min")
    keep = KeepBest(monitor, mode)
    refresh = int((cfg.get("callbacks") or {}).get("progress_bar", {}).get("refresh_rate", 5) or 0)
    with open_dict(trainer_cfg):
        trainer_cfg.trainer.enable_progress_bar = refresh > 0
    bars = [RichProgressBar(refresh_rate=refresh)] if refresh else []
    trainer = build_trainer(trainer_cfg, [keep, *bars], [])
    log.info("%s: %d epochs", what or "fine-tuning", epochs)
    task.train()  # export measured it in eval mode; dropout belongs to training
    with torch.enable_grad():
        trainer.fit(task, datamodule=datamodule)
    return {"epochs": trainer.current_epoch, "best": {monitor: keep.best}}
