"""k-fold cross-validation over assets: k trainings with ``plantml.training.train``.

Fold ``i`` trains on every non-test asset outside fold ``i`` and validates on fold ``i``
(``data.split_by.folds=k data.split_by.fold=i``), so every asset is validated exactly
once and a comparison of two models rests on all assets, not on one split of 20 units.
Each fold is an ordinary run folder (``fold<i>/``: metrics.json, predictions, checkpoints);
a fold whose metrics.json exists is not trained again (an interrupted study resumes).

:func:`summarize` reads the folds back: every numeric ``val/*`` and ``val_truncated/*``
metric per fold, their mean, standard deviation (ddof 1), min and max; the same per
operating condition for the headline metric; and the pooled scores over all assets
(each scored once, by the fold that held it out), including the truncated protocol over
all units (one cut of every unit per draw, mean and spread over the draws).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd

from plantml.errors import ConfigError
from plantml.evaluation.metrics import clean_json

log = logging.getLogger(__name__)
SPLITS = ("val", "val_truncated")
SKIP = {"n", "assets", "cuts", "ci_method", "threshold", "tp", "fp", "tn", "fn", "positives"}


def fold_overrides(overrides: list[str], folds: int, fold: int) -> list[str]:
    """The train overrides of fold ``fold``: the user's, then the fold's split keys."""
    own = [
        o
        for o in overrides
        if o.split("=", 1)[0].lstrip("+~") in ("data.split_by.folds", "data.split_by.fold")
    ]
    if own:
        raise ConfigError(
            f"plantml-cv sets data.split_by.folds and fold itself; drop {own} (use --folds)"
        )
    return [*overrides, f"data.split_by.folds={folds}", f"data.split_by.fold={fold}"]


def run_folds(overrides: list[str], folds: int, out: Path, only: list[int] | None = None) -> list:
    """Train every fold (or those in ``only``) into ``out/fold<i>``; returns their metrics."""
    from plantml import api

    if isinstance(folds, bool) or int(folds) != folds or folds < 2:
        raise ConfigError(f"--folds must be a whole number >= 2, got {folds!r}")
    out.mkdir(parents=True, exist_ok=True)
    results = []
    for fold in only if only is not None else range(folds):
        if not 0 <= fold < folds:
            raise ConfigError(f"fold {fold} is not in 0 .. {folds - 1}")
        folder = out / f"fold{fold}"
        done = folder / "metrics.json"
        if done.is_file():
            log.info("fold %d: %s exists, not trained again", fold, done)
            results.append(json.loads(done.read_text()))
            continue
        cfg = api.compose(fold_overrides(overrides, folds, fold), output_dir=folder)
        log.info("fold %d of %d: training into %s", fold + 1, folds, folder)
        results.append(api.train(cfg))
    return results


def _stats(values: list[float]) -> dict:
    arr = np.asarray([v for v in values if v is not None], dtype=np.float64)
    if not len(arr):
        return {"mean": None, "std": None, "min": None, "max": None, "folds": 0}
    return {
        "mean": float(arr.mean()),
        "std": float(arr.std(ddof=1)) if len(arr) > 1 else 0.0,
        "min": float(arr.min()),
        "max": float(arr.max()),
        "folds": len(arr),
    }


def _pooled_rul(frames: list[pd.DataFrame]) -> dict:
    pred = pd.concat(frames, ignore_index=True)
    err = (pred["prediction"] - pred["target"]).to_numpy(np.float64)
    return {
        "rmse": float(np.sqrt(np.mean(err**2))),
        "mae": float(np.mean(np.abs(err))),
        "bias": float(err.mean()),
        "n": len(err),
        "assets": int(pred["asset"].nunique()),
    }


def pooled_truncated(frames: list[pd.DataFrame], cuts: int, seed: int) -> dict | None:
    """The truncated protocol over all assets of all folds: one cut per asset per draw."""
    from plantml.evaluation.truncated import truncation_draws

    pred = pd.concat(frames, ignore_index=True)
    codes = pd.factorize(pred["asset"].astype(str))[0]
    draws = truncation_draws(codes, cuts, seed)
    err = (pred["prediction"] - pred["target"]).to_numpy(np.float64)[draws]
    per_draw = np.sqrt((err**2).mean(axis=1))
    phm = np.where(err < 0, np.exp(-err / 13) - 1, np.exp(err / 10) - 1).sum(axis=1)
    return {
        "rmse": float(np.sqrt((err**2).mean())),
        "rmse_draw_mean": float(per_draw.mean()),
        "rmse_draw_std": float(per_draw.std(ddof=1)) if cuts > 1 else 0.0,
        "score_per_draw": float(phm.mean()),
        "units": int(draws.shape[1]),
        "cuts": int(cuts),
    }


def summarize(out: Path, fold_metrics: list[dict], truncated: dict | None = None) -> dict:
    """Per-fold, mean/spread and pooled metrics; written to ``out/cv.json`` and ``cv.md``."""
    per_fold = []
    for i, m in enumerate(fold_metrics):
        row = {"fold": i, "epochs": m.get("epochs")}
        for key, value in m.items():
            split, _, name = key.partition("/")
            if split in SPLITS and name not in SKIP and isinstance(value, int | float):
                row[key] = value
        row["val_assets"] = m.get("val/assets")
        per_fold.append(row)
    keys = sorted({k for row in per_fold for k in row if "/" in k})
    summary = {k: _stats([row.get(k) for row in per_fold]) for k in keys}
    by_condition: dict = {}
    for m in fold_metrics:
        for split in SPLITS:
            for cond, values in m.get("by_condition", {}).get(split, {}).items():
                for name in ("rmse", "mae", "f1", "auroc", "accuracy"):
                    if values.get(name) is not None:
                        by_condition.setdefault(split, {}).setdefault(cond, {}).setdefault(
                            name, []
                        ).append(values[name])
    by_condition = {
        s: {c: {n: _stats(v) for n, v in names.items()} for c, names in conds.items()}
        for s, conds in by_condition.items()
    }
    result = {
        "folds": len(fold_metrics),
        "per_fold": per_fold,
        "summary": summary,
        "by_condition": by_condition,
    }
    frames = [
        pd.read_csv(out / f"fold{i}" / "predictions_val.csv")
        for i in range(len(fold_metrics))
        if (out / f"fold{i}" / "predictions_val.csv").is_file()
    ]
    is_rul = all("val/rmse" in m for m in fold_metrics)
    if is_rul and frames and len(frames) == len(fold_metrics):
        result["pooled"] = {"val": _pooled_rul(frames)}
        if truncated and truncated.get("cuts"):
            result["pooled"]["val_truncated"] = pooled_truncated(
                frames, int(truncated["cuts"]), int(truncated.get("seed") or 0)
            )
    (out / "cv.json").write_text(json.dumps(clean_json(result), indent=2) + "\n")
    (out / "cv.md").write_text(markdown(result))
    return result


def _num(value: float) -> str:
    return f"{value:.3f}" if abs(value) < 1e4 else f"{value:.3e}"


def _fmt(stats: dict) -> str:
    if stats.get("mean") is None:
        return "–"
    return (
        f"{_num(stats['mean'])} ± {_num(stats['std'])} [{_num(stats['min'])}, {_num(stats['max'])}]"
    )


def markdown(result: dict) -> str:
    """cv.md: mean ± std [min, max] over folds, then one row per fold, then pooled scores."""
    lines = [f"# {result['folds']}-fold cross-validation over assets", ""]
    lines += ["| metric | mean ± std [min, max] over folds |", "| --- | --- |"]
    for key, stats in result["summary"].items():
        lines.append(f"| {key} | {_fmt(stats)} |")
    keys = [k for k in result["summary"] if k.endswith(("/rmse", "/f1", "/auroc", "/accuracy"))]
    lines += [
        "",
        "| fold | val assets | epochs | " + " | ".join(keys) + " |",
        "| --- " * (3 + len(keys)) + "|",
    ]
    for row in result["per_fold"]:
        values = " | ".join(f"{row.get(k):.3f}" if row.get(k) is not None else "–" for k in keys)
        lines.append(
            f"| {row['fold']} | {row.get('val_assets')} | {row.get('epochs')} | {values} |"
        )
    for split, conds in result.get("by_condition", {}).items():
        if len(conds) < 2:
            continue
        lines += [
            "",
            f"{split} by operating condition:",
            "",
            "| condition | metric | over folds |",
            "| --- | --- | --- |",
        ]
        for cond, names in conds.items():
            for name, stats in names.items():
                lines.append(f"| {cond} | {name} | {_fmt(stats)} |")
    for split, pooled in result.get("pooled", {}).items():
        text = ", ".join(
            f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}" for k, v in pooled.items()
        )
        lines += ["", f"pooled {split} (every asset scored once, by its fold): {text}"]
    return "\n".join(lines) + "\n"
