"""Experiment tracking: W&B that works with no network and no account."""

from __future__ import annotations

import logging
import netrc
import os
from pathlib import Path

from lightning.pytorch.loggers import WandbLogger

log = logging.getLogger(__name__)


def _has_wandb_key() -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        path = os.environ.get("NETRC", str(Path.home() / ".netrc"))
        return netrc.netrc(path).authenticators("api.wandb.ai") is not None
    except (FileNotFoundError, netrc.NetrcParseError, OSError):
        return False


class PlantWandbLogger(WandbLogger):
    """A WandbLogger that can also upload the best checkpoint as a model artifact."""

    def __init__(self, log_best_checkpoint: bool = True, **kwargs):
        super().__init__(log_model=False, **kwargs)
        self._wandb_init.pop("anonymous", None)  # deprecated in wandb; it only prints a warning
        self.log_best_checkpoint = log_best_checkpoint

    def finish_run(
        self, metrics: dict, best_checkpoint: str | None, images: list[Path] | None = None
    ) -> None:
        """Write the final metrics into the run summary, log per-condition tables and the
        plots, attach the checkpoint, close the run."""
        import wandb

        run = self.experiment
        run.summary.update({k: v for k, v in metrics.items() if isinstance(v, int | float)})
        for split, by_cond in metrics.get("by_condition", {}).items():
            names = sorted(
                {k for m in by_cond.values() for k, v in m.items() if isinstance(v, int | float)}
            )
            rows = [[cond, *(m.get(k) for k in names)] for cond, m in by_cond.items()]
            run.log(
                {f"{split}/by_condition": wandb.Table(columns=["condition", *names], data=rows)}
            )
        for image in images or []:
            run.log({f"plots/{image.stem}": wandb.Image(str(image))})
        if self.log_best_checkpoint and best_checkpoint and Path(best_checkpoint).is_file():
            artifact = wandb.Artifact(f"model-{run.id}", type="model", metadata=metrics)
            artifact.add_file(best_checkpoint, name="best.ckpt")
            run.log_artifact(artifact, aliases=["best", "latest"])
        offline = os.environ.get("WANDB_MODE") == "offline"
        run_dir = Path(run.dir).parent
        wandb.finish()
        if offline:
            log.info("W&B offline run kept in %s; upload it with: wandb sync %s", run_dir, run_dir)


def wandb_logger(**kwargs) -> PlantWandbLogger:
    """W&B logger; with no API key and no WANDB_MODE it logs offline into the run folder."""
    if not os.environ.get("WANDB_MODE") and not _has_wandb_key():
        os.environ["WANDB_MODE"] = "offline"
        log.warning(
            "W&B: no API key found (WANDB_API_KEY or `wandb login`): logging offline into "
            "the run folder; upload later with `wandb sync <run folder>/wandb/offline-run-*`, "
            "or choose logger=csv / logger=none"
        )
    Path(kwargs.get("save_dir", ".")).mkdir(parents=True, exist_ok=True)
    return PlantWandbLogger(**kwargs)
