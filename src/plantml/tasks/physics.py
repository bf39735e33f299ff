"""Physics-informed training: loss terms next to the data loss; the model stays plain.

* :class:`PhysicsRULTask`: RUL consistency between a window and the window of
  the same run ``lag`` rows earlier. Health does not recover without
  maintenance and time runs at one unit per unit, so from ``e - lag`` to ``e``
  the true RUL falls by between 0 (capped, piecewise-linear target) and the
  elapsed time ``Δt``. The penalty, in units of ``target_scale``, is
  ``relu(pred(e) - pred(e-lag))² + relu(pred(e-lag) - pred(e) - Δt)²``.
* :class:`ThermalFailureTask`: the failure task plus a first-order thermal
  model (:class:`plantml.models.physics.ThermalModel`) fitted to the window's
  temperature by a physics-residual loss; its coefficients are logged.

Both add terms to the training loss only: ``task.model`` is the same plain
model, so export (``plantml.export.onnx.predictor``) is unchanged.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from plantml.data.targets import life_ids
from plantml.data.windows import WindowIndex
from plantml.errors import ConfigError
from plantml.models.physics import ThermalModel
from plantml.tasks.failure import FailureTask
from plantml.tasks.rul import RULTask

log = logging.getLogger(__name__)


def consistency_penalty(
    pred_now: torch.Tensor, pred_before: torch.Tensor, max_fall: torch.Tensor | float
) -> torch.Tensor:
    """Per-pair penalty of physically impossible RUL steps (same units as the predictions).

    ``pred_before`` is the prediction ``Δt`` earlier; ``max_fall`` is ``Δt`` in
    those units. Zero when RUL falls by anything in ``[0, Δt]``.
    """
    rise = F.relu(pred_now - pred_before)
    too_fast = F.relu(pred_before - pred_now - max_fall)
    return rise.square() + too_fast.square()


def consistency_pairs(
    index: WindowIndex,
    window_length: int,
    lag: int,
    life: np.ndarray | None = None,
    time: np.ndarray | None = None,
    n_rows: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Which training window ends have a partner ``lag`` rows earlier in the same run.

    Windows are grouped into blocks of the same asset (and life, when
    ``life`` per row is given) whose consecutive ends are less than
    ``window_length`` rows apart: such windows overlap, so the rows between
    them form one contiguous run. A window ending at ``e`` is paired with the
    one ending at ``e - lag`` when ``e - lag`` is not before its block's first
    end (so that window lies in the same run and life).

    Returns per table row (``n_rows``, default ``max(end) + 1``): a bool mask of
    ends that have a partner, and ``Δt`` (``time[e] - time[e - lag]``, or
    ``lag`` without ``time``).
    """
    ends = index.ends.astype(np.int64)
    n_rows = int(n_rows if n_rows is not None else (ends.max() + 1 if len(ends) else 0))
    valid = np.zeros(n_rows, dtype=bool)
    fall = np.zeros(n_rows, dtype=np.float32)
    if len(ends) == 0:
        return valid, fall
    order = np.argsort(ends, kind="stable")
    ends, assets = ends[order], index.assets[order]
    brk = np.r_[True, (assets[1:] != assets[:-1]) | (np.diff(ends) >= window_length)]
    if life is not None:
        lives = life[ends]
        brk[1:] |= lives[1:] != lives[:-1]
    first = np.maximum.accumulate(np.where(brk, ends, -1))
    ok = ends - lag >= first
    valid[ends[ok]] = True
    if time is None:
        fall[ends[ok]] = float(lag)
    else:
        fall[ends[ok]] = time[ends[ok]] - time[ends[ok] - lag]
    return valid, fall


def _data_loss(task, batch: dict, output: torch.Tensor) -> torch.Tensor:
    """The task's label loss, mixed with a teacher's as :class:`SensorTask` does."""
    loss = task.loss(output, batch["y"])
    if task._teacher:
        teacher = task._teacher[0].to(output.device)
        with torch.no_grad():
            teacher_output = teacher(batch["x"]).squeeze(-1)
        soft = task.soft_loss(output, teacher_output)
        loss = task.distill_alpha * loss + (1.0 - task.distill_alpha) * soft
    return loss


def _log_losses(task, data_loss, physics, loss, n: int) -> None:
    task.log("train/data_loss", data_loss, on_step=False, on_epoch=True, batch_size=n)
    task.log("train/physics_loss", physics, on_step=False, on_epoch=True, batch_size=n)
    task.log("train/loss", loss, on_step=True, on_epoch=True, prog_bar=True, batch_size=n)


def _datamodule(task) -> object:
    trainer = getattr(task, "_trainer", None)
    dm = getattr(trainer, "datamodule", None) if trainer is not None else None
    if dm is None or not hasattr(dm, "prepared"):
        raise ConfigError(
            f"{type(task).__name__} reads the prepared table of its data module; train it with "
            "trainer.fit(task, datamodule=SensorDataModule(...)) (plantml-train does)"
        )
    return dm


class PhysicsRULTask(RULTask):
    """RUL regression with a consistency loss between consecutive windows.

    The training loss is ``data_loss + consistency_weight * physics_loss``;
    ``physics_loss`` is the mean :func:`consistency_penalty` over the batch's
    windows that have a partner ``consistency_lag`` rows earlier in the same
    run and life (see :func:`consistency_pairs`). The partner windows are
    gathered from the prepared feature table and scored by the same model, so
    a step costs up to two forward passes. Logs ``train/data_loss`` and
    ``train/physics_loss``.

    Args:
        consistency_weight: weight of the physics term (0 turns it off).
        consistency_lag: rows between the paired windows (>= 1).
    """

    def __init__(
        self,
        model: nn.Module,
        optimizer: Callable,
        scheduler: Callable | None = None,
        condition_names: list[str] | None = None,
        loss: str = "mse",
        target_scale: float = 1.0,
        consistency_weight: float = 0.1,
        consistency_lag: int = 1,
    ):
        super().__init__(model, optimizer, scheduler, condition_names, loss, target_scale)
        if consistency_weight < 0:
            raise ConfigError(
                f"task.consistency_weight must be >= 0 (0 turns it off), got {consistency_weight}"
            )
        if int(consistency_lag) != consistency_lag or consistency_lag < 1:
            raise ConfigError(
                f"task.consistency_lag must be a whole number of rows >= 1, got {consistency_lag}"
            )
        self.consistency_weight = float(consistency_weight)
        self.consistency_lag = int(consistency_lag)
        self._pairs: dict[str, torch.Tensor] | None = None

    def on_fit_start(self) -> None:
        self._pairs = None  # rebuilt from this fit's data module on the first step

    def _pair_table(self, device: torch.device) -> dict[str, torch.Tensor]:
        if self._pairs is None:
            data = _datamodule(self).prepared("train")
            table = data.table
            time = table.durations(table.frame[table.time_column]).astype(np.float64)
            valid, fall = consistency_pairs(
                data.windows["train"],
                data.window_length,
                self.consistency_lag,
                life=life_ids(table),
                time=time,
                n_rows=len(data.features),
            )
            if not valid.any():
                log.warning(
                    "no training window has a partner %d rows earlier in its run "
                    "(data.window.stride >= window length?): the consistency loss stays 0",
                    self.consistency_lag,
                )
            length = data.window_length
            self._pairs = {
                "valid": torch.from_numpy(valid),
                "fall": torch.from_numpy(fall),
                "features": torch.from_numpy(np.ascontiguousarray(data.features)),
                "offsets": torch.arange(-length + 1, 1),
            }
        if self._pairs["valid"].device != device:
            self._pairs = {k: v.to(device) for k, v in self._pairs.items()}
        return self._pairs

    def physics_loss(self, output: torch.Tensor, ends: torch.Tensor) -> torch.Tensor:
        """Mean consistency penalty of the windows ending at ``ends`` (raw outputs ``(batch,)``)."""
        pairs = self._pair_table(output.device)
        ends = ends.to(output.device).long()
        has = pairs["valid"][ends]
        if not bool(has.any()):
            return output.sum() * 0.0
        before = ends[has] - self.consistency_lag
        x_before = pairs["features"][before[:, None] + pairs["offsets"]]
        pred_before = self(x_before).float()
        fall = pairs["fall"][ends[has]] / self.target_scale
        return consistency_penalty(output.float()[has], pred_before, fall).mean()

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        output = self(batch["x"])
        data_loss = _data_loss(self, batch, output)
        physics = (
            self.physics_loss(output, batch["end"])
            if self.consistency_weight > 0
            else output.sum() * 0.0
        )
        loss = data_loss + self.consistency_weight * physics
        _log_losses(self, data_loss, physics, loss, len(batch["y"]))
        return loss


class ThermalFailureTask(FailureTask):
    """Failure classification plus a thermal physics-residual loss.

    A :class:`ThermalModel` (``dT/dt = (k·u − h·(T − T_amb)) / C``) is fitted
    to each training window: the loss is ``data_loss + physics_weight *
    mean((residual / σ_T)²)`` where ``residual`` is the one-step error in °C
    on *de-normalised* columns (the data module's scaler offset/scale, so the
    coefficients keep physical units) and ``σ_T`` is the temperature's scale.
    Step lengths ``dt`` come from the table's time column (hours on the
    synthetic fleet). Needs global scaling (``data.scaling.per_condition=false``).

    The thermal model shares no parameters with ``task.model``: the physics
    term identifies the thermal coefficients (logged as ``physics/k``,
    ``physics/h``, ``physics/C``, ``physics/tau``, ``physics/T_ambient``) and
    the residual (``train/physics_loss``) but does not shape the network.

    Args:
        physics_weight: weight of the residual term.
        temperature: the temperature column.
        power: the loss-power input columns (one learnable gain each).
        ambient: fixed ambient temperature, or ``None`` to learn it.
        integrator: ``euler`` or ``exact`` (see :class:`ThermalModel`).
        capacity: initial ``C``; ``learn_capacity=False`` keeps it fixed.
        physics_lr: learning rate of the thermal coefficients (their own
            parameter group: ``T_ambient`` is in °C and must move tens of degrees).
    """

    def __init__(
        self,
        model: nn.Module,
        optimizer: Callable,
        scheduler: Callable | None = None,
        condition_names: list[str] | None = None,
        physics_weight: float = 0.1,
        temperature: str = "bearing_temp",
        power: list[str] | tuple[str, ...] = ("motor_current",),
        ambient: float | None = None,
        integrator: str = "euler",
        capacity: float = 1.0,
        learn_capacity: bool = True,
        physics_lr: float = 0.05,
        **failure_kwargs,
    ):
        super().__init__(model, optimizer, scheduler, condition_names, **failure_kwargs)
        if physics_weight < 0:
            raise ConfigError(f"task.physics_weight must be >= 0, got {physics_weight}")
        if isinstance(power, str):
            power = [power]
        self.physics_weight = float(physics_weight)
        self.physics_lr = float(physics_lr)
        self.temperature_column = str(temperature)
        self.power_columns = [str(p) for p in power]
        self.thermal = ThermalModel(
            len(self.power_columns),
            capacity=capacity,
            ambient=ambient,
            learn_capacity=learn_capacity,
            integrator=integrator,
        )
        self.register_buffer("ambient_started", torch.tensor(False))  # kept in checkpoints
        self._columns: dict[str, torch.Tensor] | None = None

    def setup(self, stage: str) -> None:
        if stage == "fit":
            self._columns = None

    def _column_table(self, device: torch.device) -> dict[str, torch.Tensor]:
        if self._columns is None:
            data = _datamodule(self).prepared("train")
            names = list(data.feature_names)
            wanted = [self.temperature_column, *self.power_columns]
            missing = [c for c in wanted if c not in names]
            if missing:
                raise ConfigError(
                    f"task.temperature / task.power name {missing}, not model inputs; the "
                    f"inputs are {names} (set data.include_settings=true for load/speed_rpm)"
                )
            if data.scaler.per_condition:
                raise ConfigError(
                    "the thermal loss de-normalises with one scaler for all conditions; "
                    "set data.scaling.per_condition=false"
                )
            cols = [names.index(c) for c in wanted]
            table = data.table
            time = table.durations(table.frame[table.time_column])
            self._columns = {
                "index": torch.tensor(cols),
                "offset": torch.tensor(data.scaler.offset[-1, cols], dtype=torch.float32),
                "scale": torch.tensor(data.scaler.scale[-1, cols], dtype=torch.float32),
                "time": torch.from_numpy(np.asarray(time, dtype=np.float64)),
                "offsets": torch.arange(-data.window_length + 1, 1),
            }
            if self.thermal.learn_ambient and not bool(self.ambient_started):
                with torch.no_grad():  # start T_ambient at the mean training temperature
                    self.thermal.ambient_param.fill_(float(self._columns["offset"][0]))
                    self.ambient_started.fill_(True)
        if self._columns["index"].device != device:
            self._columns = {k: v.to(device) for k, v in self._columns.items()}
        return self._columns

    def physics_residual(self, x: torch.Tensor, ends: torch.Tensor) -> torch.Tensor:
        """Thermal residual (°C) of normalised windows ``x`` ending at rows ``ends``: (B, T-1)."""
        cols = self._column_table(x.device)
        raw = x[..., cols["index"]].float() * cols["scale"] + cols["offset"]
        rows = ends.to(x.device).long()[:, None] + cols["offsets"]
        dt = torch.diff(cols["time"][rows], dim=1).float()
        return self.thermal.residual(raw[..., 0], raw[..., 1:], dt)

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        output = self(batch["x"])
        data_loss = _data_loss(self, batch, output)
        residual = self.physics_residual(batch["x"], batch["end"])
        physics = (residual / self._columns["scale"][0]).square().mean()
        loss = data_loss + self.physics_weight * physics
        _log_losses(self, data_loss, physics, loss, len(batch["y"]))
        return loss

    def on_train_epoch_end(self) -> None:
        for name, value in self.thermal.coefficients().items():
            self.log(f"physics/{name}", value)

    def configure_optimizers(self):
        thermal = [p for p in self.thermal.parameters() if p.requires_grad]
        groups = [
            {"params": [p for p in self.model.parameters() if p.requires_grad]},
            {"params": thermal, "lr": self.physics_lr, "weight_decay": 0.0},
        ]
        optimizer = self.optimizer_factory(params=groups)
        if self.scheduler_factory is None:
            return optimizer
        scheduler = self.scheduler_factory(optimizer=optimizer)
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "monitor": self.monitor, "interval": "epoch"},
        }
