"""plantml.agent: the on-device service around the torch-free runtime (:mod:`plantml.edge`).

``plantml-agent run --config agent.yaml`` reads sensor rows from MQTT, OPC UA
or files, runs one or more verified bundles over each asset's windows,
confirms alarms with a state machine (k-of-n, minimum duration, hysteresis,
cooldown), publishes predictions, alarm events and periodic summaries over
MQTT (QoS 1, retained last state) through a durable SQLite outbox, degrades
gracefully when sensors go stale (fallback bundle, rule, or stop) and exposes
Prometheus metrics and ``/healthz`` on loopback. Modules:

- :mod:`~plantml.agent.config`: ``agent.yaml`` validated key by key
- :mod:`~plantml.agent.inputs`: MQTT, OPC UA and file inputs -> records
- :mod:`~plantml.agent.engine`: records -> models -> messages, one transaction per batch
- :mod:`~plantml.agent.alarms`: the alarm state machine (pure)
- :mod:`~plantml.agent.degradation`: stale sensors -> fallback, rule or stop
- :mod:`~plantml.agent.store`: outbox, prediction log, resume state (SQLite, WAL)
- :mod:`~plantml.agent.publisher`: outbox -> broker
- :mod:`~plantml.agent.metrics`, :mod:`~plantml.agent.summary`: observability
- :mod:`~plantml.agent.service`, :mod:`~plantml.agent.cli`: the process
"""

from plantml.agent.alarms import AlarmEvent, AlarmRule, AlarmTracker
from plantml.agent.config import AgentConfig, load_config
from plantml.agent.errors import AgentConfigError, AgentError, BrokerError

__all__ = [
    "AgentConfig",
    "AgentConfigError",
    "AgentError",
    "AlarmEvent",
    "AlarmRule",
    "AlarmTracker",
    "BrokerError",
    "load_config",
]
