"""Metric names evaluate() produces, which are worse when higher, and the headline per task.

Torch-free, so that the validation gate (:mod:`plantml.evaluation.gate`) can be checked
where torch is not installed (the model registry).
"""

from __future__ import annotations

# every metric name evaluate() produces, and which of them are worse when higher
RUL_METRICS = ("rmse", "mae", "bias", "score")
FAILURE_METRICS = (
    "precision",
    "recall",
    "f1",
    "auroc",
    "auprc",
    "false_alarms_per_1000",
    "false_alarms_per_asset_day",
)
ANOMALY_METRICS = (
    "precision",
    "recall",
    "f1",
    "false_alarm_rate",
    "missed_alarm_rate",
    "detection_delay",
    "detected_share",
    "auroc",
    "false_alarms_per_asset_day",
)
CLASS_METRICS = ("accuracy", "macro_f1", "balanced_accuracy", "macro_precision")
HIGHER_IS_WORSE = {
    "rmse",
    "mae",
    "score",
    "false_alarms_per_1000",
    "false_alarms_per_asset_day",
    "false_alarm_rate",
    "missed_alarm_rate",
    "detection_delay",
}
# the metric that names a condition "worst"
HEADLINE = {"rul": "rmse", "failure": "f1", "anomaly": "f1", "class": "accuracy"}
