"""What every task shares: optimizer set-up, collecting predictions, metrics per condition."""

from __future__ import annotations

from collections.abc import Callable

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn

from plantml.errors import ConfigError
from plantml.evaluation.metrics import evaluate


class SensorTask(L.LightningModule):
    """A plain ``nn.Module`` trained for one job.

    Subclasses set ``kind``, ``monitor`` and ``loss_fn`` and may override
    ``encode_target`` and ``postprocess`` (raw model output → RUL or probability). Validation and
    test collect every prediction, so metrics are exact over the whole split,
    overall and per operating condition, also under DDP.

    Args:
        model: maps ``(batch, time, channels)`` to ``(batch, 1)``.
        optimizer: a partial optimizer, e.g. ``functools.partial(torch.optim.AdamW, lr=1e-3)``.
        scheduler: an optional partial LR scheduler; ReduceLROnPlateau watches ``monitor``.
        condition_names: names of the operating-condition codes.
    """

    kind = ""
    monitor = "val/loss"

    def __init__(
        self,
        model: nn.Module,
        optimizer: Callable,
        scheduler: Callable | None = None,
        condition_names: list[str] | None = None,
    ):
        super().__init__()
        self.model = model
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self.condition_names = list(condition_names or ["all"])
        self.test_prefix = "test"
        self.n_boot = 0  # > 0: confidence intervals by resampling assets (final evaluation only)
        self.boot_method = "auto"  # asset | block (time blocks) | auto (block for one asset)
        self.results: dict[str, dict] = {}
        self.predictions: dict[str, dict[str, torch.Tensor]] = {}  # the last pass of each split
        self._outputs: list[dict] = []
        self._teacher: tuple[nn.Module, ...] = ()  # a tuple keeps it out of the state dict
        self.distill_alpha = 1.0
        self.distill_temperature = 1.0

    # -- the job ---------------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x).squeeze(-1)

    def encode_target(self, y: torch.Tensor) -> torch.Tensor:
        """The target as the loss sees it (the RUL task scales it)."""
        return y

    def loss(self, output: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.loss_fn(output.float(), self.encode_target(y))

    def postprocess(self, output: torch.Tensor) -> torch.Tensor:
        """Raw model output → the prediction users read (RUL, probability)."""
        return output.float()

    def threshold_value(self) -> float:
        return 0.5

    def on_eval_results(self, split: str, pred: torch.Tensor, y: torch.Tensor) -> None:
        """Hook after a full validation pass (the failure task picks its threshold here)."""

    # -- distillation ------------------------------------------------------------------
    def set_teacher(
        self, teacher: nn.Module | None, alpha: float = 0.5, temperature: float = 1.0
    ) -> None:
        """Learn from ``teacher``'s raw outputs too (knowledge distillation).

        The training loss becomes ``alpha * loss(labels) + (1 - alpha) *
        soft_loss(teacher)``; the teacher is frozen and not saved with the task.
        """
        if not 0.0 <= alpha <= 1.0:
            raise ConfigError(f"distillation alpha must be in [0, 1], got {alpha}")
        if temperature <= 0:
            raise ConfigError(f"distillation temperature must be > 0, got {temperature}")
        if teacher is not None:
            teacher.eval().requires_grad_(False)
        self._teacher = () if teacher is None else (teacher,)
        self.distill_alpha, self.distill_temperature = float(alpha), float(temperature)

    def soft_loss(self, output: torch.Tensor, teacher_output: torch.Tensor) -> torch.Tensor:
        """Distance to the teacher's raw output (regression: squared error)."""
        return F.mse_loss(output.float(), teacher_output.float())

    # -- steps -------------------------------------------------------------------------
    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        output = self(batch["x"])
        loss = self.loss(output, batch["y"])
        if self._teacher:
            teacher = self._teacher[0].to(output.device)
            with torch.no_grad():
                teacher_output = teacher(batch["x"]).squeeze(-1)
            soft = self.soft_loss(output, teacher_output)
            loss = self.distill_alpha * loss + (1.0 - self.distill_alpha) * soft
        self.log(
            "train/loss",
            loss,
            on_step=True,
            on_epoch=True,
            prog_bar=True,
            batch_size=len(batch["y"]),
        )
        return loss

    def _eval_step(self, batch: dict, prefix: str) -> None:
        output = self(batch["x"])
        loss = self.loss(output, batch["y"])
        self.log(f"{prefix}/loss", loss, on_epoch=True, batch_size=len(batch["y"]), sync_dist=True)
        self._outputs.append(
            {
                "pred": self.postprocess(output).detach().float().cpu(),
                "y": batch["y"].detach().float().cpu(),
                "condition": batch["condition"].detach().cpu(),
                "asset": batch["asset"].detach().cpu(),
                "end": batch["end"].detach().cpu(),
            }
        )

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self._eval_step(batch, "val")

    def test_step(self, batch: dict, batch_idx: int) -> None:
        self._eval_step(batch, self.test_prefix)

    def predict_step(self, batch: dict, batch_idx: int) -> dict:
        return {
            "pred": self.postprocess(self(batch["x"])).float(),
            "y": batch["y"],
            "condition": batch["condition"],
            "asset": batch["asset"],
            "end": batch["end"],
        }

    def on_validation_epoch_start(self) -> None:
        self._outputs = []

    on_test_epoch_start = on_validation_epoch_start

    def on_validation_epoch_end(self) -> None:
        self._finish("val")

    def on_test_epoch_end(self) -> None:
        self._finish(self.test_prefix)

    def _gathered(self) -> dict[str, torch.Tensor]:
        outputs = self._outputs
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            everyone: list = [None] * torch.distributed.get_world_size()
            torch.distributed.all_gather_object(everyone, outputs)
            outputs = [o for rank_outputs in everyone for o in rank_outputs]
        self._outputs = []
        if not outputs:
            return {}
        return {k: torch.cat([o[k] for o in outputs]) for k in outputs[0]}

    def _finish(self, split: str) -> None:
        out = self._gathered()
        if not out:
            return
        if split == "val":
            self.on_eval_results(split, out["pred"], out["y"])
        result = evaluate(
            self.kind,
            out["pred"],
            out["y"],
            out["condition"],
            self.condition_names,
            self.threshold_value(),
            assets=out["asset"],
            n_boot=self.n_boot,
            boot_method=self.boot_method,
            class_names=getattr(self, "class_names", None),
        )
        self.results[split] = result
        self.predictions[split] = out
        for name, value in result["overall"].items():
            if isinstance(value, float) and name not in ("tp", "fp", "tn", "fn"):
                # identical on every rank (gathered above); sync_dist only keeps Lightning quiet
                self.log(
                    f"{split}/{name}",
                    value,
                    prog_bar=name in ("rmse", "f1", "auprc", "accuracy"),
                    sync_dist=True,
                )

    # -- optimisation ----------------------------------------------------------------
    def configure_optimizers(self):
        optimizer = self.optimizer_factory(params=self.parameters())
        if self.scheduler_factory is None:
            return optimizer
        scheduler = self.scheduler_factory(optimizer=optimizer)
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "monitor": self.monitor, "interval": "epoch"},
        }
