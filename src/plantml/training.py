"""``train(cfg)``: what ``plantml-train`` runs, also callable from Python and sweeps."""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import lightning as L
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from omegaconf import DictConfig, OmegaConf

from plantml.builders import (
    build_datamodule,
    build_list,
    build_task,
    build_trainer,
    check_trainer,
)
from plantml.checkpointing import check_same_run, load_weights, read_checkpoint, resume_path
from plantml.evaluation.results import finish_evaluation, write_json
from plantml.lineage import lineage

log = logging.getLogger(__name__)


class ThroughputMonitor(Callback):
    """Training windows per second: end of one batch to the end of the next.

    The span covers loading the batch, the step and every hook; the first
    batches of each epoch are left out as warm-up, and validation never counts.
    """

    def __init__(self, warmup_batches: int = 5):
        self.warmup = warmup_batches
        self.windows = 0
        self.seconds = 0.0
        self._last: float | None = None

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._last = None

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        now = time.perf_counter()
        if self._last is not None and batch_idx >= self.warmup:
            self.seconds += now - self._last
            self.windows += len(batch["y"])
        self._last = now

    @property
    def windows_per_second(self) -> float | None:
        return self.windows / self.seconds if self.seconds > 0 else None


class RunInfo(Callback):
    """Stores the resolved config and the data state in every checkpoint."""

    def __init__(self, config: dict, raw_config: dict, data_state: dict):
        self.config = config
        self.raw_config = raw_config
        self.data_state = data_state

    def on_save_checkpoint(self, trainer, pl_module, checkpoint: dict) -> None:
        checkpoint["plantml"] = {
            "config": self.config,
            "raw_config": self.raw_config,
            "data": self.data_state,
        }


def link_latest(output_dir: Path) -> None:
    """Point ``<run_name>/latest`` at this run folder (``outputs/<run_name>/runs/<time>``), so
    that the next command can name the newest run without its time stamp."""
    if output_dir.parent.name != "runs":
        return  # a folder of the user's choosing: nothing to keep track of
    link = output_dir.parent.parent / "latest"
    tmp = link.with_name(f".latest-{os.getpid()}")
    try:
        tmp.unlink(missing_ok=True)
        tmp.symlink_to(output_dir.resolve(), target_is_directory=True)
        os.replace(tmp, link)  # atomic: a reader sees the old run or the new one
    except OSError as exc:  # a file system without symlinks: the run itself is fine
        log.debug("no %s link: %s", link, exc)


def settings_line(cfg: DictConfig) -> str:
    """The settings a reader checks first, in one line (the full config is config.yaml)."""
    data, window = cfg.data, cfg.data.get("window", {})
    split = data.get("split_by", {})
    parts = [
        f"data={data.source.get('_target_', '?').rsplit('.', 1)[-1]}",
        f"window length {window.get('length')} stride {window.get('stride')}",
        f"split by {split.get('method')}",
        f"task={cfg.task.get('_target_', '?').rsplit('.', 1)[-1]}",
        f"model={cfg.model.get('_target_', '?').rsplit('.', 1)[-1]}",
        f"max_epochs {cfg.trainer.get('max_epochs')}",
        f"seed {cfg.get('seed')}",
    ]
    return ", ".join(parts)


def _checkpoint_callback(trainer: L.Trainer) -> ModelCheckpoint | None:
    return next((c for c in trainer.callbacks if isinstance(c, ModelCheckpoint)), None)


def train(cfg: DictConfig, extra_callbacks: list[Callback] | None = None) -> dict:
    """Train, pick the best checkpoint, score it; returns the metrics written to metrics.json.

    ``extra_callbacks`` join the configured ones (a sweep's pruning callback).
    """
    output_dir = Path(cfg.paths.output_dir)
    check_trainer(cfg)
    resume = resume_path(cfg.ckpt_path) if cfg.get("ckpt_path") else None
    resumed = read_checkpoint(resume, "resume") if resume else None  # before data preparation
    log.info("run %s: %s", cfg.get("run_name"), settings_line(cfg))
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    datamodule = build_datamodule(cfg)
    datamodule.setup("fit")
    task = build_task(cfg, datamodule)
    data_state = {**datamodule.state(), "fingerprint": datamodule.data.fingerprint}
    if resumed is not None:
        check_same_run(resumed, resume, cfg.seed, data_state)
        fix = "resume with the config of the run that wrote it (same model.*, data.*)"
        load_weights(task, resumed, resume, fix)
        log.info(
            "resuming from %s (epoch %s, step %s)", resume, resumed["epoch"], resumed["global_step"]
        )
        del resumed
    resolved = OmegaConf.to_container(cfg, resolve=True)
    info = lineage(cfg.seed, datamodule.data.fingerprint, datamodule.data.summary())
    info["cleaning"] = datamodule.data.cleaning
    callbacks = build_list(cfg.get("callbacks"), "callback")
    raw = OmegaConf.to_container(cfg, resolve=False)
    callbacks.append(RunInfo(resolved, raw, data_state))
    callbacks.extend(extra_callbacks or [])
    loggers = build_list(cfg.get("logger"), "logger")
    trainer = build_trainer(cfg, callbacks, loggers)
    if trainer.is_global_zero:
        output_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(cfg, output_dir / "config.yaml", resolve=True)
        write_json(output_dir / "lineage.json", info)
        link_latest(output_dir)
    for logger in loggers:
        logger.log_hyperparams({**resolved, "lineage": info})
    trainer.fit(task, datamodule=datamodule, ckpt_path=resume)
    if trainer.interrupted:
        log.warning(
            "training interrupted; resume with ckpt_path=%s", output_dir / "checkpoints/last.ckpt"
        )
    checkpoint = _checkpoint_callback(trainer)
    best = checkpoint.best_model_path if checkpoint and checkpoint.best_model_path else None
    task.results = {}
    task.n_boot = int(cfg.get("bootstrap", 0))
    task.boot_method = str(cfg.get("bootstrap_method", "auto"))
    if cfg.get("evaluate", True):
        trainer.validate(task, datamodule=datamodule, ckpt_path=best, verbose=False)
        # held-out test assets (sources with an official test set score it with plantml-eval)
        if (
            len(datamodule.data.windows["test"])
            and not datamodule.pipeline.source.has_official_test
        ):
            datamodule.eval_split = task.test_prefix = "test"
            trainer.test(task, datamodule=datamodule, ckpt_path=best, verbose=False)
    extra = {
        "epochs": trainer.current_epoch,
        "best_checkpoint": best,
        "model/parameters": sum(p.numel() for p in task.model.parameters() if p.requires_grad)
        or getattr(task.model, "parameter_count", int)(),  # classical models: tree nodes
    }
    throughput = next((c for c in callbacks if isinstance(c, ThroughputMonitor)), None)
    if getattr(task, "classical", False):  # fitted in one pass: no training steps to time
        extra["train/fit_seconds"] = task.fit_info.get("seconds")
    elif throughput and throughput.windows_per_second:
        extra["train/windows_per_second"] = throughput.windows_per_second
    gate_split = "test" if "test" in task.results else "val"
    title = f"{cfg.get('run_name', 'run')}: results"
    metrics, written = finish_evaluation(
        output_dir,
        task,
        datamodule,
        cfg.get("gate"),
        gate_split,
        title,
        extra,
        trainer.is_global_zero,
        run_cfg=cfg,
    )
    if trainer.is_global_zero:
        for logger in loggers:
            if hasattr(logger, "finish_run"):
                logger.finish_run(metrics, best, [p for p in written if p.suffix == ".png"])
    return metrics
