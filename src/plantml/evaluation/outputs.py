"""What an evaluation leaves beside metrics.json: per-window predictions and plots."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from plantml.data.pipeline import PreparedData
from plantml.evaluation.report import report_markdown

log = logging.getLogger(__name__)


def predictions_frame(
    out: dict[str, torch.Tensor], data: PreparedData, kind: str, threshold: float
) -> pd.DataFrame:
    """One row per scored window: asset, time of the window's end, condition, truth, prediction."""
    ends = out["end"].numpy()
    table = data.table
    names = np.array([*data.condition_names, "unseen"], dtype=object)
    codes = out["condition"].numpy()
    if kind == "class":
        return _class_frame(out, data, names[np.where(codes >= 0, codes, len(names) - 1)])
    frame = pd.DataFrame(
        {
            "asset": data.frame[table.asset_column].to_numpy()[ends],
            "time": data.frame[table.time_column].to_numpy()[ends],
            "condition": names[np.where(codes >= 0, codes, len(names) - 1)],
            "target": out["y"].numpy(),
            "prediction": out["pred"].numpy(),
        }
    )
    if kind in ("failure", "anomaly"):
        frame["alarm"] = (frame["prediction"] >= threshold).astype(np.int8)
    if kind == "anomaly":  # the prediction is the anomaly score
        frame["threshold"] = threshold
    return frame.sort_values(["asset", "time"], kind="stable").reset_index(drop=True)


def _class_frame(out: dict[str, torch.Tensor], data: PreparedData, conditions) -> pd.DataFrame:
    """Class predictions: true and predicted class names, the predicted class's probability,
    and one ``p_<class>`` column per class (when ``pred`` holds probabilities)."""
    ends = out["end"].numpy()
    pred = out["pred"]
    classes = np.array(data.class_names or [str(i) for i in range(pred.shape[-1])], dtype=object)
    guess = (pred.argmax(-1) if pred.dim() == 2 else pred.round().long()).numpy()
    truth = out["y"].long().numpy()
    frame = pd.DataFrame(
        {
            "asset": data.frame[data.table.asset_column].to_numpy()[ends],
            "time": data.frame[data.table.time_column].to_numpy()[ends],
            "condition": conditions,
            "target": classes[truth],
            "prediction": classes[guess],
            "probability": pred.max(-1).values.numpy() if pred.dim() == 2 else 1.0,
        }
    )
    if pred.dim() == 2:
        for i, name in enumerate(classes):
            frame[f"p_{name}"] = pred[:, i].numpy()
    return frame.sort_values(["asset", "time"], kind="stable").reset_index(drop=True)


def plot_class_confusion(pred: pd.DataFrame, classes: list[str], path: Path) -> None:
    """Confusion matrices of class predictions (rows true, columns predicted; row shares),
    overall and per condition, axes named by class."""
    groups = [("overall", pred), *pred.groupby("condition")]
    k = len(classes)
    size = max(3.2, 0.45 * k + 1.5)
    fig = _figure(figsize=(size * len(groups), size))
    axes = fig.subplots(1, len(groups), squeeze=False)[0]
    index = {name: i for i, name in enumerate(classes)}
    for ax, (name, part) in zip(axes, groups, strict=True):
        cm = np.zeros((k, k), dtype=np.int64)
        np.add.at(cm, (part["target"].map(index), part["prediction"].map(index)), 1)
        share = cm / np.maximum(cm.sum(1, keepdims=True), 1)
        ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
        for i in range(k):
            for j in range(k):
                if cm[i, j]:
                    ax.text(
                        j,
                        i,
                        str(cm[i, j]),
                        ha="center",
                        va="center",
                        color="white" if share[i, j] > 0.5 else "black",
                        fontsize=6,
                    )
        ax.set_xticks(range(k), classes, fontsize=7, rotation=90)
        ax.set_yticks(range(k), classes, fontsize=7)
        ax.set_xlabel("predicted", fontsize=8)
        ax.set_ylabel("true", fontsize=8)
        ax.set_title(str(name).replace(", ", "\n"), fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def prediction_frames(task, datamodule) -> dict[str, pd.DataFrame]:
    """:func:`predictions_frame` for every split the task scored last."""
    threshold = task.threshold_value()
    return {
        split: predictions_frame(out, datamodule.prepared(split), task.kind, threshold)
        for split, out in task.predictions.items()
    }


def add_alarm_rates(metrics: dict, frames: dict[str, pd.DataFrame]) -> None:
    """False alarms per asset-day, overall and per condition, for timestamped failure predictions.

    An asset-day is 24 hours of scored windows: each window stands for the
    median spacing between its asset's consecutive window ends.
    """
    for split, pred in frames.items():
        if "alarm" not in pred or not pd.api.types.is_datetime64_any_dtype(pred["time"]):
            continue
        hours = pred.groupby("asset")["time"].transform(
            lambda t: t.diff().median() / pd.Timedelta(1, "h") if len(t) > 1 else np.nan
        )
        pred = pred.assign(
            days=hours.fillna(hours.median()) / 24.0,
            fa=(pred["alarm"] == 1) & (pred["target"] < 0.5),
        )
        if not pred["days"].sum() > 0:
            continue
        metrics[f"{split}/false_alarms_per_asset_day"] = float(
            pred["fa"].sum() / pred["days"].sum()
        )
        for cond, part in pred.groupby("condition"):
            entry = metrics.get("by_condition", {}).get(split, {}).get(cond)
            if entry is not None and part["days"].sum() > 0:
                entry["false_alarms_per_asset_day"] = float(part["fa"].sum() / part["days"].sum())


def _figure(**kwargs):
    """A figure that does not touch pyplot's global state or backend (safe in notebooks)."""
    from matplotlib.figure import Figure

    return Figure(**kwargs)


def plot_by_condition(metrics: dict, kind: str, path: Path) -> None:
    """Bars of the headline metrics per operating condition, one group per split."""
    names = {
        "rul": ("rmse", "mae"),
        "class": ("accuracy", "macro_f1", "balanced_accuracy"),
    }.get(kind, ("recall", "precision", "f1"))
    splits = list(metrics.get("by_condition", {}))
    widths = [max(5.0, 1.5 * len(metrics["by_condition"][split])) for split in splits]
    fig = _figure(figsize=(sum(widths), 4.2))
    axes = fig.subplots(1, len(splits), squeeze=False, gridspec_kw={"width_ratios": widths})
    for ax, split in zip(axes[0], splits, strict=True):
        by_cond = metrics["by_condition"][split]
        conds = list(by_cond)
        x = np.arange(len(conds))
        width = 0.8 / len(names)
        for i, name in enumerate(names):
            values = np.array([by_cond[c].get(name) or 0.0 for c in conds], dtype=float)
            cis = [(by_cond[c].get("ci") or {}).get(name) for c in conds]
            yerr = np.array(
                [
                    [v - ci[0], ci[1] - v] if ci else [0.0, 0.0]
                    for v, ci in zip(values, cis, strict=True)
                ]
            ).T.clip(min=0)
            ax.bar(x + i * width, values, width, label=name, yerr=yerr, capsize=3)
            overall = metrics.get(f"{split}/{name}")
            if overall is not None:
                ax.axhline(overall, color=f"C{i}", linestyle="--", linewidth=0.8)
        ax.set_xticks(x + width * (len(names) - 1) / 2)
        # long cluster names ("op_setting_1=42, op_setting_2=0.84, ...") go one setting a line
        labels = [f"{c}".replace(", ", "\n") + f"\n(n={by_cond[c].get('n', 0)})" for c in conds]
        ax.set_xticklabels(labels, fontsize=7)
        ax.set_title(
            f"{split}: by condition (dashed: overall; bars: 95 % CI over assets)", fontsize=9
        )
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def _asset_grid(n: int, max_cols: int, panel: tuple[float, float]):
    """A figure with one panel per asset (``n`` of them), ``max_cols`` across; flat axes."""
    cols = min(max_cols, n)
    rows = int(np.ceil(n / cols))
    fig = _figure(figsize=(panel[0] * cols, panel[1] * rows))
    return fig, list(fig.subplots(rows, cols, squeeze=False).flat)


def _save_grid(fig, axes: list, n: int, path: Path) -> None:
    """Hide the unused panels, put the legend on the first, save."""
    for ax in axes[n:]:
        ax.set_visible(False)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def plot_rul_trajectories(
    pred: pd.DataFrame, path: Path, time_label: str = "time", n_assets: int = 6
) -> None:
    """Predicted against true RUL along the trajectories of a few assets."""
    assets = pred["asset"].drop_duplicates().to_numpy()[:n_assets]
    fig, axes = _asset_grid(len(assets), 3, (4.2, 2.8))
    for ax, asset in zip(axes, assets, strict=False):
        one = pred[pred["asset"] == asset]
        ax.plot(one["time"], one["target"], color="k", label="true")
        ax.plot(one["time"], one["prediction"], color="C1", label="predicted")
        ax.set_title(str(asset), fontsize=9)
        ax.set_ylabel("RUL")
        ax.set_xlabel(time_label, fontsize=8)
    _save_grid(fig, axes, len(assets), path)


def plot_anomaly_scores(
    pred: pd.DataFrame, threshold: float, path: Path, time_label: str = "time", n_assets: int = 6
) -> None:
    """Anomaly score over time for a few assets: threshold dashed, labelled anomalies shaded."""
    # assets with labelled anomalies first: they are the ones worth looking at
    has_anomaly = pred.groupby("asset", sort=False)["target"].max() > 0.5
    assets = [*has_anomaly[has_anomaly].index, *has_anomaly[~has_anomaly].index][:n_assets]
    fig, axes = _asset_grid(len(assets), 2, (6.0, 2.6))
    for ax, asset in zip(axes, assets, strict=False):
        one = pred[pred["asset"] == asset]
        ax.plot(one["time"], one["prediction"], color="C0", linewidth=0.8, label="score")
        if np.isfinite(threshold):
            ax.axhline(threshold, color="k", linestyle="--", linewidth=0.8, label="threshold")
        ax.fill_between(
            one["time"],
            0,
            1,
            where=(one["target"] > 0.5).to_numpy(),
            transform=ax.get_xaxis_transform(),
            color="red",
            alpha=0.15,
            step="mid",
            label="labelled anomaly",
        )
        ax.set_title(str(asset), fontsize=9)
        ax.set_ylabel("anomaly score")
        ax.set_xlabel(time_label, fontsize=8)
    _save_grid(fig, axes, len(assets), path)


def first_alarms(pred: pd.DataFrame) -> pd.DataFrame:
    """Per asset: its first alarm (time, score), how many of its windows alarmed, its top score.

    Assets that never alarmed have an empty ``first_alarm``; the table is what an operator
    reads first on unlabelled data.
    """
    rows = []
    for asset, one in pred.groupby("asset", sort=False):
        hits = one[one["alarm"] == 1]
        rows.append(
            {
                "asset": asset,
                "first_alarm": hits["time"].iloc[0] if len(hits) else None,
                "first_alarm_score": hits["prediction"].iloc[0] if len(hits) else None,
                "alarms": len(hits),
                "windows": len(one),
                "max_score": one["prediction"].max(),
            }
        )
    return pd.DataFrame(rows)


def plot_precision_recall(pred: pd.DataFrame, threshold: float, path: Path) -> None:
    """Precision-recall curve, overall and per condition, with the alarm threshold marked."""
    from torchmetrics.functional.classification import binary_precision_recall_curve

    fig = _figure(figsize=(5.5, 4.2))
    ax = fig.subplots()
    groups = [("overall", pred), *pred.groupby("condition")]
    for i, (name, part) in enumerate(groups):
        y = torch.tensor(part["target"].to_numpy()).long()
        if y.sum() == 0 or y.sum() == len(y):
            continue
        p, r, _ = binary_precision_recall_curve(torch.tensor(part["prediction"].to_numpy()), y)
        ax.plot(
            r, p, label=str(name), linewidth=2 if i == 0 else 1, color="k" if i == 0 else f"C{i}"
        )
    alarms = pred["prediction"] >= threshold
    positives = pred["target"] > 0.5
    if alarms.any() and positives.any():
        ax.scatter(
            [(alarms & positives).sum() / positives.sum()],
            [(alarms & positives).sum() / alarms.sum()],
            color="red",
            zorder=3,
            label=f"threshold {threshold:.3f}",
        )
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def plot_confusion_matrices(pred: pd.DataFrame, path: Path, outcome: str = "failure") -> None:
    """Alarm against outcome, overall and per condition (counts and row shares)."""
    groups = [("overall", pred), *pred.groupby("condition")]
    fig = _figure(figsize=(2.9 * len(groups), 3.0))
    axes = fig.subplots(1, len(groups), squeeze=False)[0]
    for ax, (name, part) in zip(axes, groups, strict=True):
        truth = (part["target"] > 0.5).to_numpy()
        alarm = (part["alarm"] == 1).to_numpy()
        cm = np.array(
            [
                [np.sum(~truth & ~alarm), np.sum(~truth & alarm)],
                [np.sum(truth & ~alarm), np.sum(truth & alarm)],
            ]
        )
        share = cm / np.maximum(cm.sum(1, keepdims=True), 1)
        ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
        for i in range(2):
            for j in range(2):
                ax.text(
                    j,
                    i,
                    f"{cm[i, j]}\n{100 * share[i, j]:.1f} %",
                    ha="center",
                    va="center",
                    color="white" if share[i, j] > 0.5 else "black",
                    fontsize=8,
                )
        ax.set_xticks([0, 1], ["no alarm", "alarm"], fontsize=8)
        ax.set_yticks([0, 1], [f"no {outcome}", outcome], fontsize=8)
        ax.set_title(str(name).replace(", ", "\n"), fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def write_outputs(
    output_dir: Path,
    task,
    datamodule,
    frames: dict[str, pd.DataFrame],
    metrics: dict,
    title: str = "evaluation",
    gate_lines: list[str] | None = None,
) -> list[Path]:
    """predictions_<split>.csv, PNG plots and report.md for every split the task scored last."""
    written = []
    threshold = task.threshold_value()
    for split, pred in frames.items():
        path = output_dir / f"predictions_{split}.csv"
        pred.to_csv(path, index=False)
        written.append(path)
        if task.kind == "rul":
            time_label = datamodule.prepared(split).table.time_column
            plot_rul_trajectories(pred, output_dir / f"rul_trajectories_{split}.png", time_label)
            written.append(output_dir / f"rul_trajectories_{split}.png")
        elif task.kind == "class":
            classes = datamodule.prepared(split).class_names
            plot_class_confusion(pred, classes, output_dir / f"confusion_{split}.png")
            written.append(output_dir / f"confusion_{split}.png")
        elif task.kind == "anomaly":
            time_label = datamodule.prepared(split).table.time_column
            plot_anomaly_scores(
                pred, threshold, output_dir / f"anomaly_scores_{split}.png", time_label
            )
            first_alarms(pred).to_csv(output_dir / f"first_alarms_{split}.csv", index=False)
            written += [
                output_dir / f"anomaly_scores_{split}.png",
                output_dir / f"first_alarms_{split}.csv",
            ]
            if pred["target"].notna().any():  # unlabelled data has no confusion to show
                plot_confusion_matrices(pred, output_dir / f"confusion_{split}.png", "anomaly")
                written.append(output_dir / f"confusion_{split}.png")
        else:
            plot_precision_recall(pred, threshold, output_dir / f"precision_recall_{split}.png")
            plot_confusion_matrices(pred, output_dir / f"confusion_{split}.png")
            written += [
                output_dir / f"precision_recall_{split}.png",
                output_dir / f"confusion_{split}.png",
            ]
    if metrics.get("by_condition"):
        plot_by_condition(metrics, task.kind, output_dir / "by_condition.png")
        written.append(output_dir / "by_condition.png")
    plots = [p.name for p in written if p.suffix == ".png"]
    (output_dir / "report.md").write_text(report_markdown(metrics, title, gate_lines, plots))
    written.append(output_dir / "report.md")
    return written
