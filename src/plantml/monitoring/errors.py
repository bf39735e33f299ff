"""Errors of plantml.monitoring: each names the problem and the fix.

Torch-free (``plantml.errors`` imports nothing), so the device side raises them too.
They are ``ValueError`` as well, like the edge runtime's errors.
"""

from __future__ import annotations

from plantml.errors import PlantMLError


class MonitoringError(PlantMLError, ValueError):
    """Base of the monitoring errors."""


class ProfileError(MonitoringError):
    """A reference profile is missing, malformed or belongs to another bundle."""


class SketchError(MonitoringError):
    """Data given to a sketch (shapes, codes) or a sketch to merge does not fit the profile."""


class RuleError(MonitoringError):
    """An alert rule (or a rules file) is malformed."""


class StoreError(MonitoringError):
    """The monitoring store cannot be opened, is too new, or a record is malformed."""


class InputFileError(MonitoringError):
    """A predictions, events, inputs or summaries file cannot be used."""
