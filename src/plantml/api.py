"""The Python API: the same configs and code paths as the command line.

from plantml import api
cfg = api.compose(["experiment=synthetic_failure", "trainer.max_epochs=2"], output_dir="outputs/demo")
metrics = api.train(cfg)
data = api.datamodule(cfg)          # the prepared fleet, windows and scaling
evaluation = api.evaluate("outputs/demo/checkpoints/best.ckpt", ["data.split=test"], output_dir="outputs/demo-eval")
report = api.export("outputs/demo", "int8", export_dir="export")   # the bundle: report["bundle"]
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from hydra import compose as hydra_compose
from hydra import initialize_config_module
from hydra.core.global_hydra import GlobalHydra
from hydra.errors import HydraException
from omegaconf import DictConfig, open_dict

import plantml.resolvers  # noqa: F401  (before any compose)
from plantml.errors import ConfigError


def compose(
    overrides: list[str] | None = None,
    output_dir: str | Path | None = None,
    config_name: str = "train",
) -> DictConfig:
    """Compose ``configs/<config_name>.yaml`` with command-line style overrides.

    ``output_dir`` replaces Hydra's run folder (default ``outputs/<run_name>/api/<time>``).
    """
    GlobalHydra.instance().clear()
    try:
        with initialize_config_module(config_module="plantml.configs", version_base="1.3"):
            cfg = hydra_compose(config_name=config_name, overrides=list(overrides or []))
    except HydraException as exc:
        raise ConfigError(f"cannot compose the config: {exc}") from None
    if output_dir is None:
        output_dir = (
            Path("outputs")
            / str(cfg.get("run_name", config_name))
            / "api"
            / datetime.now().strftime("%Y-%m-%d_%H-%M-%S")
        )
    with open_dict(cfg):
        cfg.paths.output_dir = str(Path(output_dir).resolve())
    return cfg


def train(cfg: DictConfig) -> dict:
    """Train as ``plantml-train`` does; returns the metrics also written to metrics.json."""
    from plantml.cli.common import quiet_libraries
    from plantml.training import train as _train

    quiet_libraries()
    return _train(cfg)


def datamodule(cfg: DictConfig):
    """The configured data module, prepared (``.data`` holds windows, features, scaling)."""
    from plantml.builders import build_datamodule

    dm = build_datamodule(cfg)
    dm.setup("fit")
    return dm


def evaluate(
    ckpt_path: str | Path, overrides: list[str] | None = None, output_dir: str | Path | None = None
) -> dict:
    """Score a checkpoint as ``plantml-eval`` does; returns the metrics."""
    from plantml.evaluation.checkpoint import evaluate_checkpoint

    eval_cfg = compose([f"ckpt_path={ckpt_path}"], output_dir=output_dir, config_name="eval")
    return evaluate_checkpoint(eval_cfg, list(overrides or []))


def export(
    ckpt_path: str | Path,
    recipe: str = "int8",
    export_dir: str | Path | None = None,
    overrides: list[str] | None = None,
) -> dict:
    """Export a checkpoint (or run folder) as ``plantml-export`` does; returns the report.

    ``overrides`` change export.yaml (``measure.repeats=50``, ``name=...``).
    """
    from plantml.export.recipe import run_export

    args = [f"ckpt_path={ckpt_path}", f"export={recipe}", *list(overrides or [])]
    if export_dir is not None:
        args.append(f"export_dir={export_dir}")
    out = Path(export_dir or "export") / "logs"
    return run_export(compose(args, output_dir=out, config_name="export"))
