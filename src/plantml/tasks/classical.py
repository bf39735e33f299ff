"""Classical models (``model=gbm``, ``model=iforest``) trained by the same tasks, in one pass.

A tree ensemble is not trained by gradient steps, but everything around training is the
same: the data module, the task's targets and post-processing, validation, thresholds,
checkpoints, metrics.json, per-condition reports and export. :func:`classical_task`
gives the configured task class with :class:`ClassicalFit` in front: before the first
epoch (``on_fit_start``) it gathers every training window, computes the window
statistics, and fits the model on the task's encoded targets (RUL / target_scale, the
failure flag, the normal windows for anomalies), with the validation windows for early
stopping; the single epoch then takes no optimizer step, validation scores the fitted model (the
failure task picks its best-F1 threshold, the anomaly task calibrates its threshold on
normal validation windows) and training stops.
"""

from __future__ import annotations

import logging
import time

import numpy as np
import torch
from torch import nn

from plantml.errors import ConfigError
from plantml.tasks.anomaly import AnomalyTask
from plantml.tasks.failure import FailureTask
from plantml.tasks.rul import RULTask

log = logging.getLogger(__name__)
CHUNK = 4096  # windows per statistics chunk while fitting


class ClassicalPredictor(nn.Module):
    """Window → final prediction ``(batch,)`` of a fitted classical task (what export wraps).

    ``kind`` and ``scale`` say how the raw output becomes the prediction: RUL ``max(raw *
    scale, 0)``, failure ``sigmoid(raw)``, anomaly the raw score.
    """

    classical = True

    def __init__(self, task):
        super().__init__()
        self.model = task.model
        self.kind = task.kind
        self.scale = float(task.target_scale) if task.kind == "rul" else 1.0
        self._postprocess = task.postprocess

    def forward(self, window: torch.Tensor) -> torch.Tensor:
        return self._postprocess(self.model(window).squeeze(-1))


class ClassicalFit:
    """Task mixin: fit a classical model once on the training windows, then only evaluate."""

    classical = True

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if not getattr(self.model, "classical", False):
            raise ConfigError("a classical task needs a classical model (model=gbm or iforest)")
        self.model.check_kind(self.kind)
        self.fit_info: dict = {}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x).squeeze(-1)

    def export_module(self) -> nn.Module:
        return ClassicalPredictor(self).eval()

    def _statistics(self, dataset, limit: int | None) -> tuple[np.ndarray, np.ndarray]:
        """Window statistics ``(n, F)`` and targets ``(n,)`` of a split (seeded sample)."""
        n = len(dataset)
        idx = np.arange(n)
        if limit and n > limit:
            idx = np.sort(np.random.default_rng(0).choice(n, limit, replace=False))
        feats = [
            self.model.window_features(torch.from_numpy(dataset.gather(idx[i : i + CHUNK])))
            for i in range(0, len(idx), CHUNK)
        ]
        x = np.concatenate(feats) if feats else np.zeros((0, 0), np.float32)
        y = dataset.index.targets[idx].astype(np.float64)
        keep = np.isfinite(y)
        return x[keep], y[keep]

    def _encode(self, y: np.ndarray) -> np.ndarray:
        return self.encode_target(torch.from_numpy(y)).numpy().astype(np.float64)

    def on_fit_start(self) -> None:
        dm = self.trainer.datamodule
        start = time.perf_counter()
        x, y = self._statistics(dm.dataset("train"), self.model.max_train_windows)
        val = None
        if len(dm.data.windows["val"]):
            xv, yv = self._statistics(dm.dataset("val"), self.model.max_train_windows)
            val = (xv, self._encode(yv))
        self.fit_info = self.model.fit(x, self._encode(y), self.kind, val)
        self.fit_info.update(
            {"train_windows": len(y), "seconds": round(time.perf_counter() - start, 2)}
        )
        log.info(
            "%s fitted on %d training windows in %.1f s (%s)",
            type(self.model).__name__,
            len(y),
            self.fit_info["seconds"],
            ", ".join(f"{k} {v}" for k, v in self.fit_info.items() if k != "seconds"),
        )

    def training_step(self, batch: dict, batch_idx: int) -> None:
        return None  # fitted already: no optimizer step (the epoch only walks the batches)

    def on_train_epoch_end(self) -> None:
        self.trainer.should_stop = True  # one validation of the fitted model is the training

    def configure_optimizers(self):
        return None

    def set_teacher(self, teacher, alpha: float = 0.5, temperature: float = 1.0) -> None:
        if teacher is not None:
            raise ConfigError(
                "a classical model has no distillation step; use export=fp32 or export=int8"
            )


class ClassicalRULTask(ClassicalFit, RULTask):
    """:class:`RULTask` with a classical model fitted in one pass."""


class ClassicalFailureTask(ClassicalFit, FailureTask):
    """:class:`FailureTask` with a classical model fitted in one pass."""


class ClassicalAnomalyTask(ClassicalFit, AnomalyTask):
    """:class:`AnomalyTask` with a classical model (``model=iforest``) fitted in one pass."""


CLASSICAL = {
    RULTask: ClassicalRULTask,
    FailureTask: ClassicalFailureTask,
    AnomalyTask: ClassicalAnomalyTask,
}


def classical_task_class(task_class: type) -> type:
    """The classical variant of a configured task class (exactly that class, not a subclass:
    the physics tasks add gradient-trained terms a tree ensemble cannot learn)."""
    if task_class not in CLASSICAL:
        names = ", ".join(c.__name__ for c in CLASSICAL)
        raise ConfigError(
            f"the classical models (model=gbm, model=iforest) train with {names} "
            f"(task=rul, failure, anomaly), not {task_class.__name__}"
        )
    return CLASSICAL[task_class]
