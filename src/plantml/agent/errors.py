"""Errors of the on-device agent (torch-free; the training side has :mod:`plantml.errors`)."""

from __future__ import annotations


class AgentError(Exception):
    """Something the agent cannot work with; the message names the problem and the fix."""


class AgentConfigError(AgentError):
    """``agent.yaml`` is wrong: the message names the key (``models[0].alarm.k``) and the fix."""


class BrokerError(AgentError):
    """The MQTT broker refused the agent (credentials, certificate) or cannot be reached."""
