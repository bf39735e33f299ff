"""Equipment-state inputs: how long since maintenance, how long in service.

Degradation depends on age, so a model often does better when it is told the
equipment's state, not only its sensors. These columns are computed from the
table itself (time column, maintenance and failure events) and become model
inputs like sensors; an edge device must send them too (it knows its
maintenance log), and the bundle manifest lists them as input columns.

- ``time_since_maintenance``: time since the current *life* began (the asset's
  first row, a maintenance event, or the row after a failure), in the data's
  time units (cycles, or ``time_unit`` for timestamps).
- ``running_time``: time since the asset's first row (cumulative running time
  when rows are recorded while the equipment runs).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from plantml.data.table import SensorTable
from plantml.data.targets import life_ids
from plantml.errors import ConfigError

STATE_FEATURES = ("time_since_maintenance", "running_time")


def add_state_features(
    table: SensorTable, names: list[str] | None
) -> tuple[SensorTable, list[str]]:
    """``table`` with the requested state columns added (rows in asset/time order); their names."""
    names = list(names or [])
    unknown = [n for n in names if n not in STATE_FEATURES]
    if unknown:
        raise ConfigError(
            f"unknown data.state_features {unknown}; choose from {', '.join(STATE_FEATURES)}"
        )
    if not names:
        return table, []
    frame = table.frame.copy()
    t = table.durations(frame[table.time_column])
    for name in names:
        group = life_ids(table) if name == "time_since_maintenance" else frame[table.asset_column]
        start = pd.Series(t).groupby(np.asarray(group)).transform("min").to_numpy()
        frame[name] = t - start
    return table.replace(frame=frame), names
