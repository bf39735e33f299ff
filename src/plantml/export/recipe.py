"""``plantml-export``: a checkpoint through a recipe of steps into a verified edge bundle.

Steps run in this order, each optional: distill a smaller student → prune
(and fine-tune) → export to ONNX (parity-checked against torch) → quantize to
INT8. Every intermediate model is measured as a *variant* (size, parameters,
latency, throughput, accuracy overall and per operating condition); the last
one becomes the bundle.
"""

from __future__ import annotations

import io
import json
import logging
import time
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from plantml.edge.bundle import sha256_file
from plantml.errors import ConfigError
from plantml.evaluation.checkpoint import load_run
from plantml.evaluation.metrics import HEADLINE, HIGHER_IS_WORSE
from plantml.export import onnx as ox
from plantml.export.bundle import write_bundle
from plantml.export.distill import distill
from plantml.export.finetune import fit
from plantml.export.onnx import ExportError
from plantml.export.prune import count_parameters, make_permanent, prune_model
from plantml.export.quantize import quantize
from plantml.export.report import write_report
from plantml.export.verify import EvalWindows, parity, require_parity

log = logging.getLogger(__name__)
RECIPE_KEYS = {
    "name",
    "exporter",
    "opset",
    "distill",
    "prune",
    "quantize",
    "parity",
    "max_metric_change",
}


class Measure:
    """Measures variants the same way: accuracy on the scored windows, latency, throughput."""

    def __init__(self, kind: str, windows: EvalWindows, cfg: DictConfig):
        self.kind, self.windows = kind, windows
        self.threads = int(cfg.measure.threads)
        self.repeats = int(cfg.measure.repeats)
        self.batch_size = int(cfg.measure.batch_size)
        self.one = windows.windows[:1]
        self.batch = windows.windows[: self.batch_size]

    def _throughput(self, call) -> float:
        """Windows per second in batches of ``batch_size`` (median of 5 calls)."""
        call(self.batch)
        times = []
        for _ in range(5):
            start = time.perf_counter()
            call(self.batch)
            times.append(time.perf_counter() - start)
        return len(self.batch) / float(np.median(times))

    def torch_variant(self, name: str, model: torch.nn.Module, threshold: float) -> dict:
        """``model`` (a :class:`~plantml.export.onnx.Predictor`) measured in torch eager."""
        buffer = io.BytesIO()
        torch.save(model.state_dict(), buffer)
        previous = torch.get_num_threads()
        torch.set_num_threads(self.threads)
        try:
            pred = ox.run_torch(model, self.windows.windows)
            with torch.no_grad():
                throughput = self._throughput(lambda x: model(torch.from_numpy(x)))
        finally:
            torch.set_num_threads(previous)
        return {
            "name": name,
            "format": "torch",
            "file": None,
            "bytes": buffer.getbuffer().nbytes,
            "parameters": count_parameters(model),
            "nonzero_parameters": count_parameters(model, nonzero=True),
            "latency": ox.torch_latency(model, self.one, self.threads, self.repeats),
            "throughput": throughput,
            "threshold": threshold,
            "metrics": self.windows.score(self.kind, pred, threshold),
            "_pred": pred,
        }

    def onnx_variant(
        self, name: str, path: Path, model: torch.nn.Module, threshold: float, reference: np.ndarray
    ) -> dict:
        """``path`` measured; ``model`` is the torch model it came from, ``reference`` its predictions."""
        sess = ox.session(path, self.threads)
        pred = ox.run_onnx(sess, self.windows.windows)
        input_name = sess.get_inputs()[0].name
        return {
            "name": name,
            "format": "onnx",
            "file": str(path),
            "bytes": path.stat().st_size,
            "parameters": count_parameters(model),
            "nonzero_parameters": count_parameters(model, nonzero=True),
            "latency": ox.onnx_latency(path, self.one, self.threads, self.repeats),
            "throughput": self._throughput(lambda x: sess.run(None, {input_name: x})),
            "threshold": threshold,
            "metrics": self.windows.score(self.kind, pred, threshold),
            "_pred": pred,
            "_reference": reference,
        }

    def reference(self, model: torch.nn.Module) -> np.ndarray:
        """Torch predictions on the scored windows (for parity)."""
        return ox.run_torch(model, self.windows.windows)


def _recipe(cfg: DictConfig) -> dict:
    recipe = OmegaConf.to_container(cfg.export, resolve=True)
    unknown = sorted(set(recipe) - RECIPE_KEYS)
    if unknown:
        raise ConfigError(
            f"unknown key(s) {unknown} in the export recipe; valid: {', '.join(sorted(RECIPE_KEYS))}"
        )
    return recipe


def _lineage(ckpt: Path, checkpoint: dict, run_cfg: DictConfig, recipe: dict) -> dict:
    out = {
        "checkpoint": str(ckpt),
        "checkpoint_sha256": sha256_file(ckpt),
        "training_run": run_cfg.get("run_name"),
        "recipe": recipe["name"],
        "model_config": OmegaConf.to_container(run_cfg.model, resolve=True),
    }
    for folder in (ckpt.parent.parent, ckpt.parent):
        if (folder / "lineage.json").is_file():
            out["training"] = json.loads((folder / "lineage.json").read_text())
            break
    return out


def _check_metric_change(limits: dict, baseline: dict, final: dict) -> list[str]:
    """Failures of ``max_metric_change`` ({metric: allowed worsening}) for the bundle."""
    problems = []
    for metric, allowed in (limits or {}).items():
        before = baseline["metrics"]["overall"].get(metric)
        after = final["metrics"]["overall"].get(metric)
        if before is None or after is None:
            raise ConfigError(f"export.max_metric_change names {metric!r}, which is not measured")
        worse = (after - before) if metric in HIGHER_IS_WORSE else (before - after)
        if worse > float(allowed):
            problems.append(
                f"{metric} {before:.4g} → {after:.4g} ({final['name']}) is worse than allowed "
                f"({allowed}); use a gentler recipe (less pruning, a wider student, more "
                "fine-tuning epochs) or loosen export.max_metric_change"
            )
    return problems


def run_export(cfg: DictConfig) -> dict:
    """Run the recipe ``cfg.export`` on ``cfg.ckpt_path``; returns the report (also on disk)."""
    recipe = _recipe(cfg)
    overrides = ["data.num_workers=0", *list(cfg.get("run_overrides") or [])]
    ckpt, run_cfg, datamodule, task, checkpoint = load_run(cfg.ckpt_path, overrides)
    name = cfg.get("name") or f"{run_cfg.get('run_name', 'model')}-{recipe['name']}"
    out_dir = Path(cfg.export_dir) / name
    (out_dir / "variants").mkdir(parents=True, exist_ok=True)
    data = datamodule.data
    shape = (data.window_length, len(data.feature_names))
    windows = EvalWindows(datamodule, "val", cfg.measure.get("windows"))
    if not len(windows.y):
        raise ConfigError("the run has no validation windows to check the export on")
    measure = Measure(task.kind, windows, cfg)
    tol = recipe.get("parity") or {}
    atol, rtol = float(tol.get("atol", 1e-4)), float(tol.get("rtol", 1e-3))
    notes: list[str] = []

    def export(current, label: str) -> dict:
        model = ox.predictor(current)
        path = out_dir / "variants" / f"{label}.onnx"
        info = ox.export_onnx(
            model, *shape, path, recipe.get("exporter", "auto"), recipe.get("opset", 17)
        )
        reference = measure.reference(model)
        variant = measure.onnx_variant(label, path, model, current.threshold_value(), reference)
        variant["export"] = info
        variant["parity"] = parity(reference, variant["_pred"], atol, rtol)
        require_parity(variant["parity"], f"{label}.onnx ({info['exporter']} exporter)")
        return variant

    variants = [measure.torch_variant("torch_fp32", ox.predictor(task), task.threshold_value())]
    variants.append(export(task, "onnx_fp32"))
    current, current_cfg, label = task, run_cfg, "onnx_fp32"
    if recipe.get("distill"):
        d = recipe["distill"]
        current, current_cfg, history = distill(
            task,
            run_cfg,
            datamodule,
            d.get("student"),
            d.get("epochs", 10),
            d.get("alpha", 0.5),
            d.get("temperature", 2.0),
            d.get("lr"),
        )
        label = "student_fp32"
        variants.append(export(current, label))
        variants[-1]["distillation"] = {**d, **history}
    if recipe.get("prune"):
        p = recipe["prune"]
        method = p.get("method", "structured")
        handles = prune_model(current.model, method, p.get("amount", 0.5))
        history = {}
        if int(p.get("finetune_epochs", 0)) > 0:
            history = fit(
                current, datamodule, current_cfg, p["finetune_epochs"], p.get("lr"), "fine-tuning"
            )
        make_permanent(handles)
        label = f"{'student_' if recipe.get('distill') else ''}pruned_{method}"
        variants.append(export(current, label))
        variants[-1]["pruning"] = {**p, **history}
        if method == "magnitude":
            notes.append(
                "magnitude pruning zeroes weights but keeps dense tensors: the ONNX file is not "
                "smaller (see the nonzero column); structured pruning removes units"
            )
    if recipe.get("quantize"):
        q = recipe["quantize"]
        src = Path(variants[-1]["file"])
        dst = src.with_name(f"{label.removesuffix('_fp32')}_int8.onnx")
        train_set = datamodule.dataset("train")
        rng = np.random.default_rng(0)
        n_cal = min(int(q.get("calibration_windows", 512)), len(train_set))
        calibration = train_set.gather(np.sort(rng.choice(len(train_set), n_cal, replace=False)))
        info = quantize(src, dst, q.get("method", "auto"), calibration, bool(q.get("per_channel")))
        model = ox.predictor(current)
        reference = variants[-1]["_reference"]
        variant = measure.onnx_variant(dst.stem, dst, model, current.threshold_value(), reference)
        variant["quantization"] = info
        variant["parity"] = parity(reference, variant["_pred"], float("inf"), 0.0)  # reported
        variants.append(variant)
        notes += info["notes"]
    final = variants[-1]
    problems = _check_metric_change(recipe.get("max_metric_change"), variants[0], final)
    if problems:
        raise ExportError("; ".join(problems))
    final_info = {
        "variant": final["name"],
        "bytes": final["bytes"],
        "parameters": final["parameters"],
        **{k: final[k] for k in ("export", "quantization") if k in final},
    }
    if "export" not in final_info:
        final_info["export"] = variants[-2].get("export")
    final_info.update(
        exporter=final_info["export"]["exporter"], opset=final_info["export"]["opset"]
    )
    bundle = write_bundle(
        out_dir / "bundle",
        final["file"],
        name=name,
        data=data,
        cfg=run_cfg,
        kind=task.kind,
        threshold=final["threshold"] if task.kind != "rul" else None,
        model_info=final_info,
        metrics={"split": "val", **final["metrics"]},
        lineage=_lineage(ckpt, checkpoint, run_cfg, recipe),
        stride=1,
    )
    report = {
        "name": name,
        "recipe": recipe["name"],
        "checkpoint": str(ckpt),
        "split": "val",
        "scored_windows": len(windows.y),
        "batch_size": measure.batch_size,
        "threads": measure.threads,
        "headline_metric": HEADLINE[task.kind],
        "bundle": str(bundle),
        "final_variant": final["name"],
        "size_ratio_vs_onnx_fp32": final["bytes"] / variants[1]["bytes"],
        "latency_speedup_vs_torch": variants[0]["latency"]["p50_ms"] / final["latency"]["p50_ms"],
        "variants": [{k: v for k, v in var.items() if not k.startswith("_")} for var in variants],
        "notes": notes,
    }
    report["files"] = [str(p) for p in write_report(out_dir, report)]
    return report
