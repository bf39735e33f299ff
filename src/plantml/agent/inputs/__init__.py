"""Inputs of the agent: MQTT (:mod:`.mqtt`), OPC UA (:mod:`.opcua`), files (:mod:`.file`).

Each input hands :class:`~plantml.agent.inputs.base.Record` s to the agent's
queue from its own thread; see :mod:`.base` for the record and payload format.
"""
