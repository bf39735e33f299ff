"""A generated process table: one row per machining cycle, a failure flag per row.

The per-row case of ``data=table`` (window length 1): the rows are independent cycles of
one milling machine, and a cycle fails for reasons that lie in that row alone. It follows
the structure of the public AI4I 2020 predictive-maintenance data (Matzka 2020), which is
not shipped here, with its failure modes as rules on the row:

* product ``type`` L / M / H (50 / 30 / 20 %; also ``quality`` 0 / 1 / 2 as a number);
* ``air_temperature`` [K]: a slow random walk around 300 K (sd 2 K);
* ``process_temperature`` [K]: air + 10 K + noise (sd 1 K);
* ``rotational_speed`` [rpm] from a 2860 W power level with noise; ``torque`` [Nm]
  about 40 ± 10, lower at high speed;
* ``tool_wear`` [min]: +5 / +3 / +2 per cycle for H / M / L products, the tool replaced
  at a random wear between 200 and 240 min (a tool-wear failure when it breaks first);
* failure (``failure`` = 1) when any mode hits: tool wear failure (wear past the tool's
  random life, 200-240 min, in 60 % of tools), heat dissipation (air-process difference
  < 8.6 K and speed < 1380 rpm), power (torque x speed outside 3500-9000 W), overstrain
  (wear x torque above 11000 / 12000 / 13000 min Nm for L / M / H) and random failures
  (0.1 % of cycles). About 3-4 % of cycles fail, as in AI4I.

Train on it (``experiment=process_table``: gradient boosting, one-row windows, a
temporal split; see the README section "Classical baselines")::

    plantml-train experiment=process_table data.path=machining.csv data.condition_column=type
"""

from __future__ import annotations

import numpy as np
import pandas as pd

TYPES = ("L", "M", "H")
OVERSTRAIN = {"L": 11000.0, "M": 12000.0, "H": 13000.0}
WEAR_STEP = {"L": 2.0, "M": 3.0, "H": 5.0}


def machining_table(n_rows: int = 10000, seed: int = 0) -> pd.DataFrame:
    """``n_rows`` machining cycles in order (the row order is the time): ``type``,
    ``quality``, the five process readings and ``failure`` (0/1), plus ``failure_mode``
    (text, for analysis: the label spelled out, never a feature)."""
    rng = np.random.default_rng(seed)
    types = rng.choice(TYPES, size=n_rows, p=[0.5, 0.3, 0.2])
    air = 300.0 + np.cumsum(rng.normal(0, 0.05, n_rows))
    air = 300.0 + (air - air.mean()) / max(air.std(), 1e-9) * 2.0
    process = air + 10.0 + rng.normal(0, 1.0, n_rows)
    power_level = rng.normal(2860.0, 600.0, n_rows)
    speed = np.clip(1500.0 + (power_level - 2860.0) * 0.12 + rng.normal(0, 90, n_rows), 1100, 2900)
    torque = np.clip(40.0 - (speed - 1500.0) * 0.045 + rng.normal(0, 6.5, n_rows), 3.0, 80.0)
    wear = np.zeros(n_rows)
    tool_life = rng.uniform(200, 240)
    breaks = rng.random() < 0.6
    current = 0.0
    mode = np.full(n_rows, "", dtype=object)
    for i, kind in enumerate(types):
        current += WEAR_STEP[kind]
        wear[i] = current
        if current >= tool_life:
            if breaks:
                mode[i] = "tool_wear"
            current = 0.0
            tool_life = rng.uniform(200, 240)
            breaks = rng.random() < 0.6
    power = torque * speed * 2 * np.pi / 60
    heat = (process - air < 8.6) & (speed < 1380)
    power_fail = (power < 3500) | (power > 9000)
    strain = wear * torque > np.array([OVERSTRAIN[t] for t in types])
    random_fail = rng.random(n_rows) < 0.001
    for name, hit in (
        ("heat_dissipation", heat),
        ("power", power_fail),
        ("overstrain", strain),
        ("random", random_fail),
    ):
        mode = np.where(hit & (mode == ""), name, mode)
    return pd.DataFrame(
        {
            "type": types,
            "quality": np.array([TYPES.index(t) for t in types]),
            "air_temperature": air.round(1),
            "process_temperature": process.round(1),
            "rotational_speed": speed.round(0),
            "torque": torque.round(1),
            "tool_wear": wear,
            "failure": (mode != "").astype(np.int8),
            "failure_mode": mode,
        }
    )
