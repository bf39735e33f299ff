"""``plantml-eval``: score a checkpoint with the config of the run that made it."""

from __future__ import annotations

import logging
from importlib import resources
from pathlib import Path

from omegaconf import DictConfig, OmegaConf, open_dict

import plantml.resolvers  # noqa: F401  (stored run configs use them)
from plantml.builders import build_datamodule, build_task, build_trainer, instantiate
from plantml.checkpointing import load_weights, read_checkpoint
from plantml.errors import CheckpointError, ConfigError
from plantml.evaluation.results import finish_evaluation

log = logging.getLogger(__name__)
GROUPS = ("data", "model", "task", "trainer", "logger", "callbacks", "paths")


def find_checkpoint(path: str | Path) -> Path:
    ckpt = Path(str(path)).expanduser()
    if ckpt.is_dir():
        for candidate in (ckpt / "checkpoints" / "best.ckpt", ckpt / "best.ckpt"):
            if candidate.is_file():
                return candidate
    if not ckpt.is_file():
        raise CheckpointError(
            f"checkpoint {str(ckpt)!r} not found; a training run keeps its checkpoints in "
            "<run folder>/checkpoints/best.ckpt and last.ckpt (see the path printed by plantml-train)"
        )
    return ckpt


def run_config(ckpt: Path, checkpoint: dict) -> DictConfig:
    """The composed (unresolved) config of the run that wrote ``ckpt``."""
    for folder in (ckpt.parent.parent, ckpt.parent):
        raw = folder / ".hydra" / "config.yaml"
        if raw.is_file():
            return OmegaConf.load(raw)
    stored = checkpoint.get("plantml", {}).get("raw_config")
    if stored:
        return OmegaConf.create(stored)
    for folder in (ckpt.parent.parent, ckpt.parent):
        if (folder / "config.yaml").is_file():
            return OmegaConf.load(folder / "config.yaml")
    raise CheckpointError(
        f"no run config found for {ckpt} (looked for .hydra/config.yaml and config.yaml next to "
        "its run folder, and inside the checkpoint); was it written by plantml-train?"
    )


def _group_option(group: str, name: str) -> DictConfig:
    """Load ``configs/<group>/<name>.yaml`` with its (single-level) defaults merged in."""
    path = resources.files("plantml.configs").joinpath(group, f"{name}.yaml")
    if not path.is_file():
        folder = resources.files("plantml.configs").joinpath(group)
        options = sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".yaml"))
        raise ConfigError(f"unknown option {group}={name}; available: {', '.join(options)}")
    node = OmegaConf.create(path.read_text())
    bases = node.pop("defaults", []) if "defaults" in node else []
    merged = OmegaConf.create()
    for base in bases:
        if isinstance(base, str) and base != "_self_":
            merged = OmegaConf.merge(merged, _group_option(group, base))
    return OmegaConf.merge(merged, node)


def apply_overrides(cfg: DictConfig, overrides: list[str]) -> DictConfig:
    """Apply Hydra command-line overrides (``a.b=1``, ``+a.c=2``, ``trainer=gpu``) to ``cfg``."""
    from hydra._internal.config_loader_impl import ConfigLoaderImpl
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
    except HydraException as exc:
        raise ConfigError(f"bad override: {exc}") from None
    values = []
    for override in parsed:
        key = override.key_or_group
        if (
            key in GROUPS
            and "." not in key
            and isinstance(override.value(), str)
            and not override.is_add()
        ):
            with open_dict(cfg):
                cfg[key] = _group_option(key, override.value())
        else:
            values.append(override)
    try:
        ConfigLoaderImpl._apply_overrides_to_config(values, cfg)
    except HydraException as exc:
        raise ConfigError(f"bad override: {exc}") from None
    return cfg


def load_run(ckpt_path: str | Path, overrides: list[str], base: DictConfig | None = None):
    """(checkpoint path, run config, data module, task with the trained weights, checkpoint).

    The run's stored config with ``overrides`` applied; ``base`` supplies
    ``paths`` and ``run_name`` of the calling tool (eval, export).
    """
    ckpt = find_checkpoint(ckpt_path)
    checkpoint = read_checkpoint(ckpt)
    cfg = run_config(ckpt, checkpoint)
    with open_dict(cfg):
        if base is not None:
            cfg.paths = base.paths
            cfg.run_name = base.run_name
        if "hydra" in cfg:
            del cfg["hydra"]
    cfg = apply_overrides(cfg, list(overrides))
    datamodule = build_datamodule(cfg)
    task = build_task(cfg, datamodule)
    load_weights(task, checkpoint, ckpt, "do not override model.* when evaluating or exporting")
    return ckpt, cfg, datamodule, task, checkpoint


def evaluate_checkpoint(eval_cfg: DictConfig, overrides: list[str]) -> dict:
    """Score ``eval_cfg.ckpt_path`` on ``data.split`` of its run's config with ``overrides``."""
    ckpt, cfg, datamodule, task, _ = load_run(eval_cfg.ckpt_path, overrides, eval_cfg)
    output_dir = Path(eval_cfg.paths.output_dir)
    split = datamodule.eval_split
    task.test_prefix = split
    task.n_boot = int(eval_cfg.get("bootstrap", 0))
    task.boot_method = str(eval_cfg.get("bootstrap_method", "auto"))
    bar = cfg.get("callbacks", {}).get("progress_bar") or {
        "_target_": "lightning.pytorch.callbacks.RichProgressBar"
    }
    progress = instantiate(OmegaConf.create(bar), "the progress bar (callbacks.progress_bar)")
    with open_dict(cfg):
        cfg.trainer.default_root_dir = str(output_dir)
    trainer = build_trainer(cfg, [progress], [])
    trainer.test(task, datamodule=datamodule, verbose=False)
    title = f"evaluation of {ckpt}"
    metrics, _ = finish_evaluation(
        output_dir,
        task,
        datamodule,
        eval_cfg.get("gate"),
        split,
        title,
        {"checkpoint": str(ckpt)},
        trainer.is_global_zero,
        run_cfg=cfg,
    )
    if trainer.is_global_zero:
        OmegaConf.save(cfg, output_dir / "config.yaml", resolve=True)
    return metrics
