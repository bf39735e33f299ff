"""LightningModules that train a plain model for one job: RUL, failure, anomaly or fault class."""

from plantml.tasks.anomaly import AnomalyTask
from plantml.tasks.classification import ClassificationTask
from plantml.tasks.failure import FailureTask
from plantml.tasks.physics import PhysicsRULTask, ThermalFailureTask
from plantml.tasks.rul import RULTask

__all__ = [
    "AnomalyTask",
    "ClassificationTask",
    "FailureTask",
    "PhysicsRULTask",
    "RULTask",
    "ThermalFailureTask",
]
