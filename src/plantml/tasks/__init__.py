"""LightningModules that train a plain model for one job: RUL or failure."""

from plantml.tasks.failure import FailureTask
from plantml.tasks.rul import RULTask

__all__ = ["FailureTask", "RULTask"]
