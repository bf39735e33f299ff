"""Equipment-state inputs: time since maintenance and running time, computed per row."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from plantml.data.pipeline import DataPipeline
from plantml.data.sources.base import Source
from plantml.data.state import add_state_features
from plantml.data.table import SensorTable
from plantml.errors import ConfigError
from tests.conftest import make_fleet


def _table() -> SensorTable:
    frame = pd.DataFrame(
        {
            "asset": ["a"] * 6 + ["b"] * 3,
            "cycle": [1, 2, 3, 4, 5, 6, 10, 11, 12],
            "s": np.arange(9, dtype=float),
            "maint": [0, 0, 0, 1, 0, 0, 0, 0, 0],
            "failure": [0, 0, 0, 0, 0, 0, 0, 1, 0],
        }
    )
    return SensorTable(
        frame=frame,
        asset_column="asset",
        time_column="cycle",
        sensor_columns=["s"],
        maintenance_column="maint",
        failure_column="failure",
    )


def test_state_features_reset_at_maintenance_and_after_failure():
    table, names = add_state_features(_table(), ["time_since_maintenance", "running_time"])
    assert names == ["time_since_maintenance", "running_time"]
    np.testing.assert_array_equal(
        table.frame["time_since_maintenance"], [0, 1, 2, 0, 1, 2, 0, 1, 0]
    )
    np.testing.assert_array_equal(table.frame["running_time"], [0, 1, 2, 3, 4, 5, 0, 1, 2])


def test_unknown_state_feature_names_the_choices():
    with pytest.raises(ConfigError, match="time_since_maintenance, running_time"):
        add_state_features(_table(), ["age"])


class _Fleet(Source):
    def load(self, split: str = "train") -> SensorTable:
        return make_fleet(n_assets=6)


def test_pipeline_feeds_state_features_to_the_model():
    pipe = DataPipeline(
        _Fleet(),
        split_by={"val_fraction": 0.2, "test_fraction": 0.0},
        window={"length": 5},
        target={"kind": "rul"},
        state_features=["running_time"],
    )
    data = pipe.prepare()
    assert data.feature_names[-1] == "running_time"
    col = data.feature_names.index("running_time")
    raw = data.frame["running_time"].to_numpy()
    assert raw[0] == 0 and raw.max() > 50  # cycles since the asset's first row
    # scaled like any input, with training statistics
    np.testing.assert_allclose(
        data.features[:, col],
        (raw - data.scaler.offset[-1, col]) / data.scaler.scale[-1, col],
        rtol=1e-5,
    )
