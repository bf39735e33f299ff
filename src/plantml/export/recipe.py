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
from plantml.evaluation.metrics import (
    ANOMALY_METRICS,
    CLASS_METRICS,
    FAILURE_METRICS,
    HEADLINE,
    HIGHER_IS_WORSE,
    RUL_METRICS,
    best_f1_threshold,
)
from plantml.export import onnx as ox
from plantml.export.bundle import task_manifest, write_bundle, write_sample_rows
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
    "fallbacks",
    "fallback_epochs",
    "conformal",
    "calibration",
    "asset_threshold",
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


KIND_METRICS = {
    "rul": RUL_METRICS,
    "failure": FAILURE_METRICS,
    "anomaly": ANOMALY_METRICS,
    "class": CLASS_METRICS,
}


def _check_metric_change(limits: dict, baseline: dict, final: dict, kind: str) -> list[str]:
    """Failures of ``max_metric_change`` ({metric: allowed worsening}) for the bundle.

    One recipe serves every task: a metric of another task kind (``rmse`` for an anomaly
    model) is skipped; a name no task measures is a ConfigError.
    """
    problems = []
    known = {m for names in KIND_METRICS.values() for m in names}
    for metric, allowed in (limits or {}).items():
        if metric not in known:
            raise ConfigError(
                f"export.max_metric_change names {metric!r}, which no task measures; use "
                f"metrics such as {', '.join(sorted(known))}"
            )
        if metric not in KIND_METRICS[kind]:
            continue
        before = baseline["metrics"]["overall"].get(metric)
        after = final["metrics"]["overall"].get(metric)
        if before is None or after is None:
            continue  # not assessable on these windows (e.g. F1 without a positive)
        worse = (after - before) if metric in HIGHER_IS_WORSE else (before - after)
        if worse > float(allowed):
            problems.append(
                f"{metric} {before:.4g} → {after:.4g} ({final['name']}) is worse than allowed "
                f"({allowed}); use a gentler recipe (less pruning, a wider student, more "
                "fine-tuning epochs) or loosen export.max_metric_change"
            )
    return problems


def calibrated_threshold(task, pred: np.ndarray, y: np.ndarray) -> float:
    """An anomaly or failure model's alarm threshold from its scores ``pred`` (n,) on
    validation windows labelled ``y`` (n,): the task's rule on the normal windows (anomaly),
    best F1 (failure)."""
    if task.kind == "anomaly":
        normal = pred[y < 0.5]
        return float(task.calibrate(normal)) if len(normal) else task.threshold_value()
    return best_f1_threshold(torch.from_numpy(pred.astype(np.float32)), torch.from_numpy(y))


class ExportRun:
    """One recipe on one checkpoint: the current model, the variants measured so far."""

    def __init__(self, cfg: DictConfig):
        self.recipe = _recipe(cfg)
        overrides = ["data.num_workers=0", *list(cfg.get("run_overrides") or [])]
        self.ckpt, self.run_cfg, self.datamodule, self.task, self.checkpoint = load_run(
            cfg.ckpt_path, overrides
        )
        run_name = self.run_cfg.get("run_name", "model")
        self.name = cfg.get("name") or f"{run_name}-{self.recipe['name']}"
        self.out_dir = Path(cfg.export_dir) / self.name
        (self.out_dir / "variants").mkdir(parents=True, exist_ok=True)
        data = self.datamodule.data
        self.shape = (data.window_length, len(data.feature_names))
        # the split the run is evaluated on (data.split: SKAB's and CWRU's test parts), else val
        self.split = self.datamodule.eval_split
        if not len(self.datamodule.prepared(self.split).windows[self.split]):
            self.split = "val"
        self.windows = EvalWindows(self.datamodule, self.split, cfg.measure.get("windows"))
        if not len(self.windows.y):
            raise ConfigError(f"the run has no {self.split} windows to check the export on")
        # every variant's alarm threshold is set again from its own scores on all of
        # validation, as training set it (measure.windows only thins the measurements)
        whole = self.split == "val" and not cfg.measure.get("windows")
        self.calibration = self.windows if whole else EvalWindows(self.datamodule, "val")
        self.measure = Measure(self.task.kind, self.windows, cfg)
        tol = self.recipe.get("parity") or {}
        self.atol, self.rtol = float(tol.get("atol", 1e-4)), float(tol.get("rtol", 1e-3))
        self.current, self.current_cfg = self.task, self.run_cfg
        self.variants: list[dict] = []
        self.notes: list[str] = []

    def baseline(self) -> None:
        """The trained model in torch, and its float ONNX export."""
        model = ox.predictor(self.task)
        self.variants.append(
            self.measure.torch_variant("torch_fp32", model, self.task.threshold_value())
        )
        self.export("onnx_fp32")

    def export(self, label: str) -> dict:
        """Export the current model, measure it, and require parity with torch."""
        model = ox.predictor(self.current)
        path = self.out_dir / "variants" / f"{label}.onnx"
        info = ox.export_onnx(
            model,
            *self.shape,
            path,
            self.recipe.get("exporter", "auto"),
            self.recipe.get("opset", 17),
        )
        reference = self.measure.reference(model)
        threshold = self.variant_threshold(path)
        variant = self.measure.onnx_variant(label, path, model, threshold, reference)
        variant["export"] = info
        variant["parity"] = parity(reference, variant["_pred"], self.atol, self.rtol)
        require_parity(variant["parity"], f"{label}.onnx ({info['exporter']} exporter)")
        self.variants.append(variant)
        return variant

    def variant_threshold(self, path: Path) -> float:
        """The alarm threshold of the ONNX variant at ``path``, calibrated on its own scores.

        Anomaly: the task's rule (quantile / POT) on the normal validation windows;
        failure: best F1 on validation. A quantized model scores differently from its
        float parent, so it gets its own threshold; RUL and class models have none.
        """
        task = self.current
        kind = task.kind
        fixed = getattr(task, "threshold_method", None) == "fixed"
        if kind not in ("anomaly", "failure") or fixed or not len(self.calibration.y):
            return task.threshold_value()
        pred = ox.run_onnx(ox.session(path, self.measure.threads), self.calibration.windows)
        return calibrated_threshold(task, pred, self.calibration.y)

    def distill(self, spec: dict) -> None:
        self.current, self.current_cfg, history = distill(
            self.task,
            self.run_cfg,
            self.datamodule,
            spec.get("student"),
            spec.get("epochs", 10),
            spec.get("alpha", 0.5),
            spec.get("temperature", 2.0),
            spec.get("lr"),
        )
        self.export("student_fp32")["distillation"] = {**spec, **history}

    def prune(self, spec: dict) -> None:
        method = spec.get("method", "structured")
        handles = prune_model(self.current.model, method, spec.get("amount", 0.5))
        history = {}
        if int(spec.get("finetune_epochs", 0)) > 0:
            history = fit(
                self.current,
                self.datamodule,
                self.current_cfg,
                spec["finetune_epochs"],
                spec.get("lr"),
                "fine-tuning",
            )
        make_permanent(handles)
        prefix = "student_" if self.current is not self.task else ""
        self.export(f"{prefix}pruned_{method}")["pruning"] = {**spec, **history}
        if method == "magnitude":
            self.notes.append(
                "magnitude pruning zeroes weights but keeps dense tensors: the ONNX file is not "
                "smaller (see the nonzero column); structured pruning removes units"
            )

    def quantize(self, spec: dict) -> None:
        """INT8 of the last float variant; its difference from torch is reported, not enforced."""
        source = self.variants[-1]
        src = Path(source["file"])
        dst = src.with_name(f"{src.stem.removesuffix('_fp32')}_int8.onnx")
        train_set = self.datamodule.dataset("train")
        n_cal = min(int(spec.get("calibration_windows", 512)), len(train_set))
        pick = np.random.default_rng(0).choice(len(train_set), n_cal, replace=False)
        calibration = train_set.gather(np.sort(pick))
        info = quantize(
            src, dst, spec.get("method", "auto"), calibration, bool(spec.get("per_channel"))
        )
        model = ox.predictor(self.current)
        reference = source["_reference"]
        threshold = self.variant_threshold(dst)
        variant = self.measure.onnx_variant(dst.stem, dst, model, threshold, reference)
        variant["export"] = source["export"]
        variant["quantization"] = info
        variant["parity"] = parity(reference, variant["_pred"], float("inf"), 0.0)
        self.variants.append(variant)
        self.notes += info["notes"]

    def reference_profile(self, final: dict):
        """The bundle's reference profile (training rows, the final variant's outputs)."""
        from plantml.export.profile import export_profile

        start = time.perf_counter()
        profile = export_profile(
            self.datamodule.data,
            self.windows,
            final["_pred"],
            self.task.kind,
            final["threshold"] if self.task.kind != "rul" else None,
            task_manifest(self.task.kind, self.run_cfg, None, "")["output_name"],
            getattr(self.datamodule.data, "class_names", None),
        )
        size = len(json.dumps(profile.to_dict(), separators=(",", ":")))
        self.notes.append(
            f"reference profile: {size / 1024:.1f} KB, built in {time.perf_counter() - start:.1f} s"
        )
        return profile

    def _spec(self, name: str) -> dict:
        """The recipe's ``conformal`` / ``calibration`` block, else the training run's."""
        spec = self.recipe.get(name)
        if spec is None:
            spec = self.run_cfg.get(name)
            spec = OmegaConf.to_container(spec, resolve=True) if spec is not None else None
        return dict(spec or {})

    def uncertainty(self, final: dict) -> tuple[dict, dict]:
        """(final variant, extra ``task`` manifest keys): conformal intervals for RUL, the
        calibration folded into the graph for failure (:mod:`plantml.export.uncertainty`).

        Both are fitted on the validation windows with the final variant's own predictions.
        """
        from plantml.export.uncertainty import calibrate_variant, interval_block

        kind, cal = self.task.kind, self.calibration
        conformal, calibration = self._spec("conformal"), self._spec("calibration")
        wanted = (kind == "rul" and conformal.get("level") is not None) or (
            kind == "failure" and calibration.get("method")
        )
        if not wanted or not len(cal.y):
            return final, {}
        sess = ox.session(final["file"], self.measure.threads)
        pred = ox.run_onnx(sess, cal.windows)
        if kind == "rul":
            n = len(self.datamodule.data.condition_names)
            return final, {"interval": interval_block(pred, cal.y, cal.conditions, n, conformal)}
        src = Path(final["file"])
        dst, threshold, block = calibrate_variant(src, pred, cal.y, final["threshold"], calibration)
        from plantml.evaluation.calibration import apply_scaling

        got = ox.run_onnx(ox.session(dst, self.measure.threads), cal.windows)
        want = apply_scaling(pred, block["a"], block["b"])
        check = parity(want.astype(np.float32), got, 1e-5, 1e-4)
        require_parity(check, f"{dst.name} (calibration folded into the graph)")
        self.notes.append(
            f"failure probabilities calibrated ({block['method']}, a={block['a']:.4g}, "
            f"b={block['b']:.4g}) inside the graph; validation ECE "
            f"{block['val_ece_before']:.4f} -> {block['val_ece_after']:.4f}"
        )
        block["parity"] = check
        final = {
            **final,
            "file": str(dst),
            "bytes": dst.stat().st_size,
            "threshold": threshold,
            # the bundle's outputs on the measured windows (what later steps read, e.g. a
            # reference profile of the outputs)
            "_pred": apply_scaling(final["_pred"], block["a"], block["b"]).astype(np.float32),
        }
        return final, {"calibration": block}

    def finish(self) -> dict:
        """Check the metric limits, seal the bundle, write the report; returns the report."""
        final = self.variants[-1]
        problems = _check_metric_change(
            self.recipe.get("max_metric_change"), self.variants[0], final, self.task.kind
        )
        if problems:
            raise ExportError("; ".join(problems))
        kind = self.task.kind
        final, task_extra = self.uncertainty(final)
        spec = self.recipe.get("asset_threshold")
        if spec is not None:
            from plantml.core.asset_threshold import check_spec

            if kind != "anomaly":
                raise ConfigError("export.asset_threshold is for anomaly bundles only")
            try:
                k, q, m = check_spec(dict(spec))
            except ValueError as exc:
                raise ConfigError(f"export.{exc}") from None
            task_extra["asset_threshold"] = {"windows": k, "quantile": q, "margin": m}
        bundle = write_bundle(
            self.out_dir / "bundle",
            final["file"],
            name=self.name,
            data=self.datamodule.data,
            cfg=self.run_cfg,
            kind=kind,
            threshold=final["threshold"] if kind != "rul" else None,
            model_info={
                "variant": final["name"],
                "bytes": final["bytes"],
                "parameters": final["parameters"],
                "exporter": final["export"]["exporter"],
                "opset": final["export"]["opset"],
                "per_window": bool((final.get("quantization") or {}).get("per_window")),
                **{k: final[k] for k in ("export", "quantization") if k in final},
            },
            metrics={"split": self.split, **final["metrics"]},
            lineage=_lineage(self.ckpt, self.checkpoint, self.run_cfg, self.recipe),
            profile=self.reference_profile(final),
            task_extra=task_extra,
        )
        samples = write_sample_rows(
            bundle,
            self.datamodule.prepared(self.split),
            self.split,
            self.out_dir / "sample_rows.csv",
        )
        torch_v, onnx_v = self.variants[0], self.variants[1]
        report = {
            "name": self.name,
            "recipe": self.recipe["name"],
            "checkpoint": str(self.ckpt),
            "split": self.split,
            "scored_windows": len(self.windows.y),
            "batch_size": self.measure.batch_size,
            "threads": self.measure.threads,
            "headline_metric": HEADLINE[kind],
            "bundle": str(bundle),
            "sample_rows": str(samples),
            "final_variant": final["name"],
            "size_ratio_vs_onnx_fp32": final["bytes"] / onnx_v["bytes"],
            "latency_speedup_vs_torch": torch_v["latency"]["p50_ms"] / final["latency"]["p50_ms"],
            "variants": [
                {k: v for k, v in var.items() if not k.startswith("_")} for var in self.variants
            ],
            "notes": self.notes,
        }
        report["files"] = [str(p) for p in write_report(self.out_dir, report)]
        return report


def run_export(cfg: DictConfig) -> dict:
    """Run the recipe ``cfg.export`` on ``cfg.ckpt_path``; returns the report (also on disk).

    Order: distill → prune (+ fine-tune) → quantize; each step is optional.
    """
    run = ExportRun(cfg)
    steps = [s for s in ("distill", "prune") if run.recipe.get(s)]
    if getattr(run.task, "classical", False) and steps:
        raise ConfigError(
            f"the export recipe {run.recipe['name']!r} has {' and '.join(steps)}, which a "
            "classical model (trees) does not have; use export=fp32 or export=int8"
        )
    run.baseline()
    for step in ("distill", "prune", "quantize"):
        spec = run.recipe.get(step)
        if spec:
            getattr(run, step)(spec)
    report = run.finish()
    if run.recipe.get("fallbacks"):  # bundles without named sensors (plantml.export.fallback)
        from plantml.export.fallback import export_fallbacks

        report["fallbacks"] = export_fallbacks(run, report["bundle"])
        write_report(run.out_dir, report)
    return report
