"""Errors of the model registry. Refusals name the rule that refused and the way forward."""

from __future__ import annotations

from plantml.errors import PlantMLError


class RegistryError(PlantMLError):
    """The registry cannot do what was asked (bad input, broken store, missing file)."""


class NotFound(RegistryError):
    """A model, version, user, target or token does not exist."""


class Refused(RegistryError):
    """A rule refused the action. ``code`` names the rule (``self_approval``, ``expired_token``...).

    Refusals are recorded in the audit trail with their code and message.
    """

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


class AuthError(Refused):
    """The caller is not who they claim (unknown, expired or revoked token)."""


class TamperError(RegistryError):
    """A stored bundle, signature or audit entry no longer matches what was recorded."""
