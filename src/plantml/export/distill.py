"""Knowledge distillation: a small student learns from a trained teacher on the same data.

The student is the same task (so the same metrics, threshold calibration and
post-processing) around a smaller model: the teacher's model config with
``student`` overrides (``{hidden_size: 16, num_layers: 1}``), or another model
config group option (``{_group_: cnn, ...}`` once the zoo has one). Its loss is
``alpha * loss(labels) + (1 - alpha) * soft_loss(teacher outputs)``
(:meth:`plantml.tasks.base.SensorTask.set_teacher`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from omegaconf import DictConfig, OmegaConf, open_dict

from plantml.builders import build_task
from plantml.errors import ConfigError
from plantml.export.finetune import fit
from plantml.export.prune import count_parameters

log = logging.getLogger(__name__)


def student_config(cfg: DictConfig, student: Mapping) -> DictConfig:
    """The run config with its model replaced by the student's."""
    from plantml.evaluation.checkpoint import _group_option

    student = dict(student or {})
    if not student:
        raise ConfigError(
            "export.distill.student is empty; give the student's model settings, "
            "e.g. export.distill.student={hidden_size: 16, num_layers: 1}"
        )
    group = student.pop("_group_", None)
    out = cfg.copy()
    with open_dict(out):
        base = _group_option("model", group) if group else out.model
        out.model = OmegaConf.merge(base, OmegaConf.create(student))
    return out


def distill(
    teacher_task,
    cfg: DictConfig,
    datamodule,
    student: Mapping,
    epochs: int,
    alpha: float = 0.5,
    temperature: float = 2.0,
    lr: float | None = None,
):
    """Train and return the student task (best validation epoch kept)."""
    student_cfg = student_config(cfg, student)
    task = build_task(student_cfg, datamodule)
    task.set_teacher(teacher_task.model, alpha=alpha, temperature=temperature)
    teacher_n, student_n = count_parameters(teacher_task.model), count_parameters(task.model)
    log.info(
        "distillation: student %d parameters (%.1f %% of the teacher's %d)",
        student_n,
        100.0 * student_n / teacher_n,
        teacher_n,
    )
    history = fit(task, datamodule, student_cfg, epochs, lr, what="distillation")
    task.set_teacher(None)
    return task, student_cfg, history
