"""SKAB's own scoring of anomaly detectors, and thresholds calibrated per asset on its head.

plantml scores an anomaly model per *window* (label and alarm at the window's last row).
The Skoltech Anomaly Benchmark scores per *point* of each experiment's test part (the rows
after the first 400), with its own conventions, reproduced here from its reference
detectors' evaluation (our reading of the public code; nothing copied):

- **Window score → point label.** A detector scores every window of ``N`` rows of the
  test part. Row ``r`` (counted from the test part's first row) is labelled anomalous
  when the ``N - 1`` windows that end at rows ``r .. r + N - 2`` all exceed the threshold
  (the reference loop leaves out the window that *starts* at ``r``), and only rows
  ``N - 1 <= r <= T - 2N + 1`` can be labelled (``T`` rows in the test part); every other row
  is labelled normal. A point alarm thus needs a full window of consecutive exceedances.
- **Which points are scored.** Every row of every test part, pooled over the experiment
  files (the anomaly-free file has no test part).
- **Metrics.** From the pooled point counts: ``F1 = TP / (TP + (FN + FP) / 2)``,
  false-alarm rate ``FAR = FP / (FP + TN)`` and missed-alarm rate ``MAR = FN / (FN + TP)``
  (SKAB prints the last two in percent; here they are fractions).
- **Thresholds.** SKAB's detectors are fitted and calibrated per experiment file: the
  upper control limit is a high quantile (0.99 to 0.999) of the file's own training
  residuals, times a margin (4/3 for the autoencoders). :func:`head_thresholds` does the
  same with a trained plantml model: each asset's threshold from the scores of the
  windows of its own head (its train and validation rows, normal operation).

The changepoint (NAB) score is not reproduced. Metrics land in metrics.json as
``<split>/skab_f1``, ``skab_far``, ``skab_mar`` (the run's threshold) and
``<split>/skab_asset_f1`` ... (thresholds per asset from its head).
"""

from __future__ import annotations

import logging

import numpy as np

from plantml.errors import ConfigError

log = logging.getLogger(__name__)


def point_labels(window_alarm: np.ndarray, n_rows: int, length: int) -> np.ndarray:
    """SKAB's point labels ``(n_rows,)`` int8 of one test part from window alarms.

    ``window_alarm[k]`` is the alarm of the window ending at row ``k`` of the test part
    ``(n_rows,)`` (rows where no window ends: False). Row ``r`` is 1 when rows
    ``r .. r + length - 2`` all end alarmed windows and ``length - 1 <= r <= n_rows - 2 *
    length + 1``.
    """
    if length < 2:
        raise ConfigError(
            f"SKAB's point labels need windows of at least 2 rows (data.window.length={length})"
        )
    alarm = np.asarray(window_alarm, dtype=np.int64)
    span = length - 1
    csum = np.r_[0, np.cumsum(alarm)]
    out = np.zeros(n_rows, dtype=np.int8)
    r = np.arange(length - 1, n_rows - 2 * length + 2)
    if len(r):
        out[r] = (csum[r + span] - csum[r]) == span
    return out


def binary_scores(truth: np.ndarray, label: np.ndarray) -> dict:
    """SKAB's F1, FAR and MAR (fractions) from pooled point labels, with the counts."""
    truth, label = np.asarray(truth) == 1, np.asarray(label) == 1
    tp, fp = int((truth & label).sum()), int((~truth & label).sum())
    fn, tn = int((truth & ~label).sum()), int((~truth & ~label).sum())
    return {
        "f1": tp / (tp + (fn + fp) / 2) if tp + fn + fp else None,
        "far": fp / (fp + tn) if fp + tn else None,
        "mar": fn / (fn + tp) if fn + tp else None,
        "tp": tp,
        "fp": fp,
        "fn": fn,
        "tn": tn,
    }


def head_thresholds(
    scores: np.ndarray, assets: np.ndarray, quantile: float = 0.999, margin: float = 4 / 3
) -> dict[int, float]:
    """Per asset code: ``margin`` x the ``quantile`` of its head windows' scores."""
    if not 0.0 < quantile < 1.0 or margin <= 0:
        raise ConfigError(
            f"skab.quantile must be in (0, 1) and skab.margin > 0, got {quantile}, {margin}"
        )
    return {
        int(a): float(margin * np.quantile(scores[assets == a], quantile))
        for a in np.unique(assets)
    }


def score_split(
    out: dict, frame_truth: np.ndarray, length: int, thresholds, default: float | None = None
) -> dict:
    """SKAB metrics of one split's windows (``out``: a task's ``predictions[split]``).

    ``frame_truth`` is the per-row anomaly label of the whole prepared table;
    ``thresholds`` one number or ``{asset code: threshold}`` (assets without one use
    ``default``).
    """
    ends, assets = out["end"].numpy(), out["asset"].numpy()
    scores = out["pred"].numpy().astype(np.float64)
    truth_all, label_all = [], []
    for a in np.unique(assets):
        mine = assets == a
        e = ends[mine]
        start = int(e.min()) - (length - 1)  # the test part's first row
        n_rows = int(e.max()) - start + 1
        thr = thresholds.get(int(a), default) if isinstance(thresholds, dict) else thresholds
        alarm = np.zeros(n_rows, dtype=bool)
        alarm[e - start] = scores[mine] >= thr
        label_all.append(point_labels(alarm, n_rows, length))
        truth_all.append(frame_truth[start : start + n_rows])
    return binary_scores(np.concatenate(truth_all), np.concatenate(label_all))


def skab_results(task, datamodule, options: dict) -> dict:
    """Flat metrics and the ``skab`` block for every labelled split the anomaly task scored."""
    import torch

    from plantml.export import onnx as ox

    quantile = float(options.get("quantile", 0.999))
    margin = float(options.get("margin", 4 / 3))
    data = datamodule.data
    column = data.table.anomaly_column
    if column is None:
        return {}
    truth = data.frame[column].to_numpy()
    length = data.window_length
    # each asset's head: its train and validation windows (normal operation)
    head_scores, head_assets = [], []
    predictor = ox.predictor(task)
    for split in ("train", "val"):
        ds = datamodule.dataset(split)
        idx = np.arange(len(ds))
        with torch.no_grad():
            for i in range(0, len(idx), 2048):
                x = torch.from_numpy(ds.gather(idx[i : i + 2048]))
                head_scores.append(predictor(x).float().numpy())
        head_assets.append(ds.index.assets)
    per_asset = head_thresholds(
        np.concatenate(head_scores), np.concatenate(head_assets), quantile, margin
    )
    metrics: dict = {}
    block = {
        "quantile": quantile,
        "margin": margin,
        "thresholds": {data.asset_names[a]: t for a, t in per_asset.items()},
        "global_threshold": task.threshold_value(),
    }
    for split, out in task.predictions.items():
        if split == "val" or not len(out["y"]) or not np.isfinite(out["y"].numpy()).all():
            continue
        scored = {
            "skab": score_split(out, truth, length, task.threshold_value()),
            "skab_asset": score_split(out, truth, length, per_asset, task.threshold_value()),
        }
        for prefix, result in scored.items():
            for name in ("f1", "far", "mar"):
                metrics[f"{split}/{prefix}_{name}"] = result[name]
        block[split] = scored
    metrics["skab"] = block
    return metrics
