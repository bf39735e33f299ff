"""Fallback bundles: the model retrained without named sensors, for the agent's degradation.

When a sensor goes stale on a device, ``plantml-agent`` can switch the asset to
a bundle that never needed that sensor. The export recipe names the sensor
subsets::

    plantml-export ckpt_path=RUN export=int8 'export.fallbacks=[[pressure],[vibration_rms,motor_current]]' \
        export.fallback_epochs=5

For each subset: the run's data with those columns removed from the model's
inputs (cleaning, conditions, splits and scaling as in the run), the run's
model and task config (the input size follows the data), trained for
``fallback_epochs`` (the best validation epoch kept, the failure threshold
re-picked on validation), exported to ONNX with the recipe's exporter (parity
checked against torch), quantized when the recipe quantizes, and sealed as a
bundle in ``<bundle>/fallbacks/without-<names>/``. The main manifest then lists
them under ``fallbacks`` (``[{"without": [...], "path": ..., "metrics": ...}]``)
and is sealed again, so its hashes cover the fallback files and a device
verifies everything at once.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import DictConfig, OmegaConf, open_dict

from plantml.builders import build_datamodule, build_task
from plantml.data.sources.base import Source
from plantml.data.table import SensorTable
from plantml.edge.bundle import load_bundle, write_manifest
from plantml.errors import ConfigError
from plantml.evaluation.metrics import HEADLINE
from plantml.export import onnx as ox
from plantml.export.bundle import write_bundle
from plantml.export.finetune import fit
from plantml.export.quantize import quantize
from plantml.export.recipe import calibrated_threshold
from plantml.export.verify import EvalWindows, parity, require_parity

log = logging.getLogger(__name__)


class WithoutSensors(Source):
    """A source whose tables no longer offer ``drop`` as sensor or setting inputs.

    The columns stay in the frame (cleaning bounds and condition columns may
    name them); only their roles as model inputs go.
    """

    def __init__(self, source: Source, drop: list[str]):
        self.source, self.drop = source, list(drop)
        self.has_official_test = source.has_official_test

    def __getattr__(self, name: str) -> Any:  # n_conditions, normal_assets, ... of the source
        if name in ("source", "drop"):
            raise AttributeError(name)
        return getattr(self.source, name)

    def load(self, split: str = "train") -> SensorTable:
        table = self.source.load(split)
        inputs = set(table.sensor_columns) | set(table.setting_columns)
        unknown = sorted(set(self.drop) - inputs)
        if unknown:
            raise ConfigError(
                f"export.fallbacks names {unknown}, which are not sensor or setting columns of "
                f"{table.name}; choose from {', '.join(sorted(inputs))}"
            )
        return table.replace(
            sensor_columns=[c for c in table.sensor_columns if c not in self.drop],
            setting_columns=[c for c in table.setting_columns if c not in self.drop],
        )

    def files(self, split: str = "train") -> list[Path]:
        return self.source.files(split)

    def fingerprint(self, split: str = "train") -> str:
        return self.source.fingerprint(split)


def _subsets(recipe: dict) -> list[list[str]]:
    subsets = recipe.get("fallbacks") or []
    ok = isinstance(subsets, list) and all(
        isinstance(s, list) and s and all(isinstance(c, str) for c in s) for s in subsets
    )
    if not ok:
        raise ConfigError(
            f"export.fallbacks must be a list of sensor lists, e.g. [[pressure],[vibration_rms,"
            f"motor_current]]; got {subsets!r}"
        )
    return [sorted(set(s)) for s in subsets]


def _config(run_cfg: DictConfig, drop: list[str]) -> DictConfig:
    """The run's config with the dropped columns' cleaning bounds removed."""
    cfg = run_cfg.copy()
    bounds = OmegaConf.select(cfg, "data.cleaning.clip.bounds")
    if bounds:
        with open_dict(cfg):
            cfg.data.cleaning.clip.bounds = {k: v for k, v in bounds.items() if k not in drop}
    return cfg


def _train(run, drop: list[str], epochs: int):
    """A data module without ``drop`` and a task trained on it."""
    cfg = _config(run.run_cfg, drop)
    datamodule = build_datamodule(cfg)
    datamodule.pipeline.source = WithoutSensors(datamodule.pipeline.source, drop)
    task = build_task(cfg, datamodule)
    if not datamodule.data.feature_names:
        raise ConfigError(f"export.fallbacks {drop} leaves the model no input")
    history = fit(task, datamodule, cfg, epochs, None, f"fallback without {', '.join(drop)}")
    return cfg, datamodule, task, history


def export_fallback(run, bundle_dir: Path, drop: list[str], epochs: int) -> dict:
    """Train, export, check and seal one fallback bundle; returns its entry for the manifest."""
    name = "without-" + "-".join(drop)
    cfg, datamodule, task, history = _train(run, drop, epochs)
    data = datamodule.data
    folder = run.out_dir / "fallbacks" / name
    folder.mkdir(parents=True, exist_ok=True)
    model = ox.predictor(task)
    fp32 = folder / "model_fp32.onnx"
    info = ox.export_onnx(
        model,
        data.window_length,
        len(data.feature_names),
        fp32,
        run.recipe.get("exporter", "auto"),
        run.recipe.get("opset", 17),
    )
    windows = EvalWindows(datamodule, run.split, len(run.windows.y))  # as many as the main bundle
    reference = ox.run_torch(model, windows.windows)
    pred = ox.run_onnx(ox.session(fp32), windows.windows)
    require_parity(
        parity(reference, pred, run.atol, run.rtol), f"fallback {name} ({info['exporter']})"
    )
    final, model_info = (
        fp32,
        {"variant": "fallback_fp32", "exporter": info["exporter"], "opset": info["opset"]},
    )
    spec = run.recipe.get("quantize")
    if spec:
        train_set = datamodule.dataset("train")
        n_cal = min(int(spec.get("calibration_windows", 512)), len(train_set))
        pick = np.sort(np.random.default_rng(0).choice(len(train_set), n_cal, replace=False))
        final = folder / "model_int8.onnx"
        q = quantize(
            fp32,
            final,
            spec.get("method", "auto"),
            train_set.gather(pick),
            bool(spec.get("per_channel")),
        )
        pred = ox.run_onnx(ox.session(final), windows.windows)
        model_info.update(variant="fallback_int8", quantization=q)
    kind = task.kind
    threshold = task.threshold_value()
    fixed = getattr(task, "threshold_method", None) == "fixed"
    if kind in ("anomaly", "failure") and not fixed:  # its own scores, as every export variant
        val = windows if windows.split == "val" else EvalWindows(datamodule, "val")
        val_pred = pred if val is windows else ox.run_onnx(ox.session(final), val.windows)
        if len(val.y):
            threshold = calibrated_threshold(task, val_pred, val.y)
    metrics = {"split": windows.split, **windows.score(kind, pred, threshold)}
    out = write_bundle(
        bundle_dir / "fallbacks" / name,
        final,
        name=f"{run.name}-{name}",
        data=data,
        cfg=cfg,
        kind=kind,
        threshold=threshold if kind != "rul" else None,
        model_info={**model_info, "bytes": final.stat().st_size},
        metrics=metrics,
        lineage={"fallback_of": run.name, "without": drop, "training": history},
    )
    needs = set(load_bundle(out).required_columns) & set(drop)
    if needs:
        raise ConfigError(
            f"export.fallbacks {drop}: the fallback still needs {sorted(needs)} (the condition "
            "column or a cluster setting); a fallback cannot drop it"
        )
    headline = HEADLINE[kind]
    log.info("fallback %s: %s %.4g", name, headline, metrics["overall"].get(headline, float("nan")))
    return {
        "without": drop,
        "path": f"fallbacks/{name}",
        "metrics": metrics["overall"],
        "epochs": epochs,
    }


def export_fallbacks(run, bundle_dir: str | Path) -> list[dict]:
    """Every fallback of ``run.recipe`` into ``bundle_dir/fallbacks``; re-seals the main bundle."""
    bundle_dir = Path(bundle_dir)
    epochs = int(run.recipe.get("fallback_epochs") or 5)
    entries = [export_fallback(run, bundle_dir, drop, epochs) for drop in _subsets(run.recipe)]
    manifest = json.loads((bundle_dir / "manifest.json").read_text(encoding="utf-8"))
    manifest["fallbacks"] = entries
    write_manifest(bundle_dir, manifest)
    load_bundle(bundle_dir)  # as a device will: every hash, the fallbacks' files included
    return entries
