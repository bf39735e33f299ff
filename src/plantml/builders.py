"""Build the data module, task, loggers and callbacks from a composed config."""

from __future__ import annotations

import inspect
import logging

import hydra
from omegaconf import DictConfig, OmegaConf, open_dict

from plantml.data.datamodule import SensorDataModule
from plantml.errors import ConfigError, PlantMLError

log = logging.getLogger(__name__)
TASK_ONLY_KEYS = ("monitor", "mode", "name")  # read by callbacks and run names, not the task


def instantiate(node: DictConfig, what: str, **kwargs):
    """``hydra.utils.instantiate`` whose failures name the config group to fix."""
    try:
        return hydra.utils.instantiate(node, **kwargs)
    except hydra.errors.InstantiationException as exc:
        cause = exc.__cause__
        if isinstance(cause, PlantMLError):
            raise cause from None
        raise ConfigError(f"cannot build {what}: {cause or exc}") from None


def task_kind(cfg: DictConfig) -> str:
    """``rul`` or ``failure``: the ``kind`` of the configured task class."""
    try:
        return hydra.utils.get_class(cfg.task._target_).kind
    except (ImportError, AttributeError, hydra.errors.HydraException) as exc:
        raise ConfigError(
            f"task._target_={cfg.task.get('_target_')!r} is not a plantml task: {exc}"
        ) from None


def build_datamodule(cfg: DictConfig) -> SensorDataModule:
    """The data module of ``cfg.data``; the target kind follows the task."""
    data_cfg = cfg.data.copy()
    kind = task_kind(cfg)
    with open_dict(data_cfg):
        if data_cfg.target.get("kind") not in (None, kind):
            raise ConfigError(
                f"data.target.kind={data_cfg.target.kind} does not fit the {kind} task; "
                f"leave data.target.kind unset (null) or choose a matching task"
            )
        data_cfg.target.kind = kind
        accepted = inspect.signature(SensorDataModule).parameters
        resolved = OmegaConf.to_container(data_cfg, resolve=True)
        # top-level keys such as data.root or data.subset only feed data.source by interpolation
        for key in list(resolved):
            if key not in accepted and not key.startswith("_"):
                resolved.pop(key)
    return instantiate(OmegaConf.create(resolved), "the data module (data=...)", _convert_="all")


def build_task(cfg: DictConfig, datamodule: SensorDataModule):
    """The LightningModule of ``cfg.task`` around the model of ``cfg.model``."""
    datamodule.setup("fit")
    data = datamodule.data
    is_class = task_kind(cfg) == "class"
    if is_class and len(data.class_names) < 2:
        raise ConfigError(
            f"the class task needs at least 2 classes, found {data.class_names}; check "
            "data.target.label_column and data.target.classes"
        )
    model = instantiate(cfg.model, "the model (model=...)")(
        in_features=len(data.feature_names),
        out_features=len(data.class_names) if is_class else 1,
    )
    task_cfg = OmegaConf.to_container(cfg.task, resolve=True)
    if getattr(model, "classical", False):  # a tree ensemble: the task fits it in one pass
        from plantml.tasks.classical import classical_task_class

        cls = classical_task_class(hydra.utils.get_class(cfg.task._target_))
        task_cfg["_target_"] = f"{cls.__module__}.{cls.__qualname__}"
    if is_class:
        task_cfg["class_names"] = list(data.class_names)
    for key in TASK_ONLY_KEYS:
        task_cfg.pop(key, None)
    if task_cfg.get("pos_weight") == "auto":
        task_cfg["pos_weight"] = (
            datamodule.pos_weight() if task_cfg.get("loss") == "weighted_bce" else None
        )
    if task_cfg.get("target_scale") == "auto":
        cap = cfg.data.target.get("rul_cap")
        targets = data.windows["train"].targets
        task_cfg["target_scale"] = float(cap) if cap else float(max(targets.max(), 1.0))
    if task_cfg.get("loss") == "weighted_bce" and cfg.data.sampler.get("kind") == "balanced":
        log.warning(
            "weighted_bce with a balanced sampler counts the imbalance twice; "
            "use one of them (data.sampler.kind=shuffle or task.loss=bce)"
        )
    return instantiate(
        OmegaConf.create(task_cfg),
        "the task (task=...)",
        model=model,
        condition_names=data.condition_names,
    )


def build_list(node: DictConfig | None, what: str) -> list:
    """Instantiate every ``_target_`` entry of a callbacks / logger group."""
    if not node:
        return []
    return [
        instantiate(item, f"{what} {name!r}")
        for name, item in node.items()
        if isinstance(item, DictConfig) and "_target_" in item
    ]


def check_trainer(cfg: DictConfig) -> None:
    """Fail fast (before data preparation) when the asked-for accelerator is not there."""
    import torch

    accelerator = str(cfg.trainer.get("accelerator", "cpu"))
    if accelerator in ("gpu", "cuda") and not torch.cuda.is_available():
        raise ConfigError(
            f"trainer.accelerator={accelerator} needs a CUDA GPU, but torch sees none "
            f"(torch {torch.__version__}, CUDA build {torch.version.cuda}); use trainer=cpu, "
            "or trainer=ddp trainer.accelerator=cpu for several CPU processes"
        )


def build_trainer(cfg: DictConfig, callbacks: list, loggers: list):
    """The Lightning Trainer of ``cfg.trainer``."""
    import torch

    torch.set_float32_matmul_precision("high")  # TF32 matmuls on GPUs that have them
    return instantiate(
        cfg.trainer, "the trainer (trainer=...)", callbacks=callbacks, logger=loggers or False
    )
