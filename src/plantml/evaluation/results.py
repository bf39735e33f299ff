"""From a task's last scored passes to what a run leaves behind.

``finish_evaluation`` turns the per-split results into the metrics.json layout,
adds training coverage, false alarms per asset-day and the gate verdict, and
writes metrics.json, predictions, plots and report.md; training and
``plantml-eval`` both end with it.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig, OmegaConf

from plantml.evaluation.metrics import clean_json
from plantml.evaluation.outputs import add_alarm_rates, prediction_frames, write_outputs
from plantml.evaluation.report import print_results

log = logging.getLogger(__name__)


def flatten_results(results: dict[str, dict], coverage_by_split: dict | None = None) -> dict:
    """Per-split evaluation results → the metrics.json layout.

    Overall scalars under ``"<split>/<metric>"``; per-condition metrics under
    ``"by_condition"``; 95 % intervals under ``"intervals"``; the worst
    condition under ``"worst_condition"``; training coverage under ``"coverage"``.
    """
    flat: dict = {}
    nested: dict = {"by_condition": {}, "intervals": {}, "worst_condition": {}, "coverage": {}}
    for split, result in results.items():
        overall = dict(result["overall"])
        if "ci" in overall:
            nested["intervals"][split] = overall.pop("ci")
        for name, value in overall.items():
            flat[f"{split}/{name}"] = value
        nested["by_condition"][split] = result["by_condition"]
        if result.get("worst_condition"):
            nested["worst_condition"][split] = result["worst_condition"]
        if coverage_by_split and split in coverage_by_split:
            nested["coverage"][split] = coverage_by_split[split]
    flat.update({k: v for k, v in nested.items() if v or k == "by_condition"})
    return flat


def apply_gate(gate_cfg: DictConfig | None, metrics: dict, split: str) -> list[str] | None:
    """Check the ``gate`` config on ``split``; record the verdict in ``metrics["gate"]``; its lines, or None."""
    from plantml.evaluation.gate import check_gate, load_gate

    rules, min_samples, min_assets = load_gate(
        OmegaConf.to_container(gate_cfg, resolve=True) if gate_cfg else None
    )
    if not rules:
        return None
    result = check_gate(metrics, split, rules, min_samples, min_assets)
    metrics["gate"] = result.to_dict()
    lines = result.summary_lines()
    for line in lines:
        (log.info if result.passed else log.warning)("gate: %s", line)
    return lines


def coverage_warnings(datamodule, splits) -> dict:
    """Training coverage of each evaluated split's conditions; warnings go to the log too."""
    from plantml.evaluation.metrics import coverage

    train = datamodule.data.windows["train"].conditions
    out = {}
    for split in splits:
        data = datamodule.prepared(split)
        out[split] = coverage(train, data.windows[split].conditions, data.condition_names)
        for entry in out[split].values():
            if "warning" in entry:
                log.warning("coverage (%s): %s", split, entry["warning"])
    return out


@rank_zero_only
def write_json(path: Path, payload: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(clean_json(payload), indent=2, default=str) + "\n")


def finish_evaluation(
    output_dir: Path,
    task,
    datamodule,
    gate_cfg: DictConfig | None,
    gate_split: str,
    title: str,
    extra: dict,
    is_global_zero: bool = True,
    run_cfg: DictConfig | None = None,
) -> tuple[dict, list[Path]]:
    """metrics.json and the files beside it for what ``task`` scored last; (metrics, files written).

    ``run_cfg`` (the run's config) switches on the extra evaluations it asks for:
    ``truncated.cuts`` (the official-test protocol on held-out RUL units,
    :mod:`plantml.evaluation.truncated`), ``conformal`` and ``calibration``
    (:mod:`plantml.evaluation.uncertainty`).
    """
    from plantml.evaluation.truncated import truncated_results
    from plantml.evaluation.uncertainty import uncertainty_results

    results = dict(task.results)
    truncated = dict((run_cfg.get("truncated") if run_cfg is not None else None) or {})
    if truncated.get("cuts"):
        results.update(
            truncated_results(
                task, datamodule, truncated["cuts"], int(truncated.get("seed") or 0), task.n_boot
            )
        )
    metrics = flatten_results(results, coverage_warnings(datamodule, task.results))
    metrics.update(extra)
    data = datamodule.data
    metrics["data"] = {"features": list(data.feature_names), "warnings": list(data.warnings)}
    frames = prediction_frames(task, datamodule) if is_global_zero else {}
    add_alarm_rates(metrics, frames)
    if is_global_zero:
        output_dir.mkdir(parents=True, exist_ok=True)
    added, extra_files = uncertainty_results(
        task, datamodule, run_cfg, frames, output_dir if is_global_zero else None
    )
    metrics.update(added)
    skab = dict((run_cfg.get("skab") if run_cfg is not None else None) or {})
    if skab.get("enabled") and task.kind == "anomaly":
        from plantml.evaluation.skab import skab_results

        metrics.update(skab_results(task, datamodule, skab))
    gate_lines = apply_gate(gate_cfg, metrics, gate_split) if task.results else None
    written: list[Path] = []
    if is_global_zero:
        output_dir.mkdir(parents=True, exist_ok=True)
        write_json(output_dir / "metrics.json", metrics)
        written = write_outputs(output_dir, task, datamodule, frames, metrics, title, gate_lines)
        written += extra_files
        print_results(metrics, title=title, output_dir=output_dir)
    return metrics, written
