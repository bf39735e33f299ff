"""Metrics for RUL regression, failure classification and anomaly detection, overall and per condition.

All functions take 1-D tensors of equal length (predictions, targets) and
return plain floats (``None`` where a metric is undefined, e.g. AUROC with
one class), ready for ``metrics.json``.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torchmetrics.functional.classification import (
    binary_auroc,
    binary_average_precision,
    binary_precision_recall_curve,
)
from torchmetrics.functional.regression import mean_absolute_error, mean_squared_error

from plantml.evaluation.names import (  # noqa: F401 (re-exported: the names live torch-free)
    ANOMALY_METRICS,
    CLASS_METRICS,
    FAILURE_METRICS,
    HEADLINE,
    HIGHER_IS_WORSE,
    RUL_METRICS,
)


def phm08_score(pred: torch.Tensor, target: torch.Tensor) -> float:
    """PHM08 challenge score: sum of exp(-d/13) - 1 (early) and exp(d/10) - 1 (late), d = pred - true.

    Late predictions cost more than early ones. Lower is better.
    """
    d = (pred - target).double()
    return float(torch.where(d < 0, torch.exp(-d / 13) - 1, torch.exp(d / 10) - 1).sum())


def regression_metrics(pred: torch.Tensor, target: torch.Tensor) -> dict:
    """RMSE, MAE, bias (mean of pred - true; > 0 is late), PHM08 score, count."""
    if len(target) == 0:
        return {"n": 0}
    return {
        "rmse": float(mean_squared_error(pred, target, squared=False)),
        "mae": float(mean_absolute_error(pred, target)),
        "bias": float((pred - target).mean()),
        "score": phm08_score(pred, target),
        "n": len(target),
    }


def best_f1_threshold(prob: torch.Tensor, target: torch.Tensor) -> float:
    """Probability threshold with the highest F1 (0.5 if there are no positives)."""
    target = target.long()
    if target.sum() == 0 or target.sum() == len(target):
        return 0.5
    precision, recall, thresholds = binary_precision_recall_curve(prob, target)
    f1 = 2 * precision * recall / (precision + recall).clamp_min(1e-12)
    best = int(torch.argmax(f1[:-1]))  # the last point has no threshold
    return float(thresholds[best])


def classification_metrics(prob: torch.Tensor, target: torch.Tensor, threshold: float) -> dict:
    """Precision, recall, F1 with alarms at ``prob >= threshold``; AUROC, AUPRC; false alarms per 1000 windows."""
    n = len(target)
    if n == 0:
        return {"n": 0}
    target = target.long()
    alarm = prob >= threshold  # the same rule as the precision-recall curve and the edge runtime
    positive = target == 1
    tp, fp = int((alarm & positive).sum()), int((alarm & ~positive).sum())
    fn, tn = int((~alarm & positive).sum()), int((~alarm & ~positive).sum())
    precision = tp / (tp + fp) if tp + fp else None
    # without a positive window recall and F1 say nothing: not assessable, not 0
    recall = tp / (tp + fn) if tp + fn else None
    f1 = 2 * tp / (2 * tp + fp + fn) if tp + fn else None
    both = 0 < int(target.sum()) < n
    return {
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "auroc": float(binary_auroc(prob, target)) if both else None,
        "auprc": float(binary_average_precision(prob, target)) if both else None,
        "false_alarms_per_1000": 1000.0 * fp / n,
        "threshold": threshold,
        "tp": tp,
        "fp": fp,
        "tn": tn,
        "fn": fn,
        "positives": tp + fn,
        "n": n,
    }


def class_codes(pred: torch.Tensor) -> torch.Tensor:
    """Predicted class codes ``(n,)`` from probabilities ``(n, K)`` (argmax) or codes ``(n,)``."""
    return pred.argmax(dim=-1) if pred.dim() == 2 else pred.round().long()


def multiclass_metrics(
    pred: torch.Tensor, target: torch.Tensor, class_names: list[str] | None = None
) -> dict:
    """Accuracy, macro F1, balanced accuracy, recall per class and the confusion matrix.

    ``pred`` is ``(n, K)`` probabilities or ``(n,)`` class codes, ``target``
    ``(n,)`` codes. Macro F1 and balanced accuracy average over the classes
    present in ``target`` (a class never seen there has no recall); the
    confusion matrix is ``K x K`` counts, rows true class, columns predicted.
    """
    n = len(target)
    k = len(class_names) if class_names else None
    if k is None:
        k = int(pred.shape[1]) if pred.dim() == 2 else 0
        k = max(k, int(target.max()) + 1 if n else 0, int(class_codes(pred).max()) + 1 if n else 0)
    names = list(class_names) if class_names else [str(i) for i in range(k)]
    if n == 0:
        return {"n": 0}
    truth, guess = target.long(), class_codes(pred).long()
    cm = torch.bincount(truth * k + guess, minlength=k * k).reshape(k, k)
    support, predicted, hits = cm.sum(1), cm.sum(0), cm.diag()
    present = support > 0
    recall = hits.double() / support.clamp_min(1)
    precision = hits.double() / predicted.clamp_min(1)
    f1 = 2 * hits.double() / (support + predicted).clamp_min(1)
    return {
        "accuracy": float(hits.sum()) / n,
        "macro_f1": float(f1[present].mean()),
        "balanced_accuracy": float(recall[present].mean()),
        "macro_precision": float(precision[present].mean()),
        "per_class_recall": {names[i]: float(recall[i]) if present[i] else None for i in range(k)},
        "confusion_matrix": cm.tolist(),
        "classes": names,
        "n": n,
    }


def evaluate(
    kind: str,
    pred: torch.Tensor,
    target: torch.Tensor,
    conditions: torch.Tensor,
    condition_names: list[str],
    threshold: float = 0.5,
    assets: torch.Tensor | None = None,
    n_boot: int = 0,
    seed: int = 0,
    ends: torch.Tensor | None = None,
    class_names: list[str] | None = None,
    boot_method: str = "auto",
) -> dict:
    """Metrics overall and per operating condition for ``kind`` rul, failure, anomaly or class.

    ``pred`` is the RUL estimate, the failure probability or the anomaly
    score (:func:`plantml.evaluation.anomaly.anomaly_metrics`; ``ends``, the
    window ends, order an asset's windows into events, else the given order
    does); all inputs are (windows,). Returns ``{"overall": {...}, "by_condition": {name: {...}},
    "worst_condition": {...}}``; each metrics dict carries ``n`` (windows) and,
    with ``assets``, ``assets`` (distinct assets). With ``n_boot`` > 0 each also
    carries ``ci``: 95 % intervals from resampling assets (windows of one asset
    are not independent; ``boot_method`` ``block`` resamples blocks of consecutive
    windows instead, ``auto`` does so where there is a single asset; the method used
    is ``ci_method``). For ``class``, ``pred`` is ``(windows, K)`` class
    probabilities or ``(windows,)`` codes (:func:`multiclass_metrics`, named by
    ``class_names``); intervals are not computed for it (``n_boot`` is ignored).
    """

    def one(mask: torch.Tensor | None) -> dict:
        p, t = (pred, target) if mask is None else (pred[mask], target[mask])
        labelled = (
            torch.isfinite(t) if t.dtype.is_floating_point else torch.ones_like(t, dtype=bool)
        )
        if kind == "anomaly":
            from plantml.evaluation.anomaly import anomaly_metrics

            def part(v):
                return v if v is None or mask is None else v[mask]

            out = anomaly_metrics(p, t, threshold, part(assets), part(ends))
        elif kind == "rul":
            out = regression_metrics(p, t)
        elif kind == "class":
            out = multiclass_metrics(p, t, class_names)
        else:
            out = classification_metrics(p, t, threshold)
        if assets is not None:
            a = assets if mask is None else assets[mask]
            out["assets"] = int(torch.unique(a).numel())
            if n_boot > 0 and bool(labelled.any()) and kind != "class":
                from plantml.evaluation.bootstrap import asset_bootstrap, resampling_units

                keep = labelled.numpy()
                units, method = resampling_units(a.numpy()[keep], boot_method)
                out["ci_method"] = method
                ci = asset_bootstrap(
                    "failure" if kind == "anomaly" else kind,  # alarms: the same counts
                    p.numpy()[keep],
                    t.numpy()[keep],
                    units,
                    threshold=threshold,
                    n_boot=n_boot,
                    seed=seed,
                )
                out["ci"] = {
                    k: None if v is None else [float(v[0]), float(v[1])] for k, v in ci.items()
                }
        return out

    by_condition = {}
    for code in torch.unique(conditions).tolist():
        name = condition_names[code] if 0 <= code < len(condition_names) else "unseen"
        by_condition[name] = one(conditions == code)
    overall = one(None)
    return {
        "overall": overall,
        "by_condition": by_condition,
        "worst_condition": worst_condition(kind, overall, by_condition),
    }


def worst_condition(kind: str, overall: dict, by_condition: dict) -> dict | None:
    """The condition with the worst headline metric (RMSE, F1) and its gap to the overall figure."""
    metric = HEADLINE[kind]
    higher_is_worse = metric in HIGHER_IS_WORSE
    scored = {c: m[metric] for c, m in by_condition.items() if m.get(metric) is not None}
    if len(scored) < 2 or overall.get(metric) is None:
        return None
    pick = max if higher_is_worse else min
    name = pick(scored, key=scored.get)
    return {
        "metric": metric,
        "condition": name,
        "value": scored[name],
        "overall": overall[metric],
        "gap": scored[name] - overall[metric],
        "n": by_condition[name].get("n"),
    }


def coverage(train_conditions, eval_conditions, names: list[str], min_share: float = 0.05) -> dict:
    """Training windows behind each evaluated condition, with a warning where they are few or none.

    A condition with no training windows was never seen in training; one with
    less than ``min_share`` of the training windows was rarely seen.
    """
    train = np.asarray(train_conditions)
    total = max(len(train), 1)
    out = {}
    for code in np.unique(np.asarray(eval_conditions)).tolist():
        name = names[code] if 0 <= code < len(names) else "unseen"
        n = int((train == code).sum()) if code >= 0 else 0
        entry = {"train_windows": n, "train_share": n / total}
        if n == 0:
            entry["warning"] = f"condition {name!r} has no training windows: the model never saw it"
        elif n / total < min_share:
            entry["warning"] = (
                f"condition {name!r} has only {n} training windows ({100 * n / total:.1f} % of "
                "training): its metrics rest on little data"
            )
        out[name] = entry
    return out


def clean_json(value):
    """Replace NaN / inf with None so the result is valid JSON."""
    if isinstance(value, dict):
        return {k: clean_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [clean_json(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
