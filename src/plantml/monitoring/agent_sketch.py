"""The drift sketch as a summary provider of the edge agent (numpy only).

``plantml-agent`` fills the ``sketches`` field of its periodic summary with a
provider object per model (``summary.sketches: "package.module:factory"``,
called with the model's bundle). Configure::

    summary:
      sketches: plantml.monitoring.agent_sketch:DriftSketch

and every summary carries ``{"kind": "plantml-drift", "rows": n, "predictions": m,
"sketch": ProfileSketch.to_dict()}`` for the rows and predictions of its
interval. Rows are buffered and added ``batch`` at a time (bounded memory).
A bundle without a reference profile gets ``{"kind": "plantml-drift",
"sketch": null, "reason": ...}``: re-export it to monitor drift.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from plantml.core.conditions import ConditionRule
from plantml.edge.bundle import Bundle
from plantml.monitoring.profile import load_profile
from plantml.monitoring.rows import row_codes
from plantml.monitoring.sketch import ProfileSketch

KIND = "plantml-drift"


def _number(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("nan")


class DriftSketch:
    """``update(row, prediction)`` per accepted row, ``snapshot()`` per summary interval."""

    def __init__(self, bundle: Bundle, batch: int = 256):
        self.profile = load_profile(bundle, required=False)
        self.features = bundle.feature_columns
        self.assigner = ConditionRule(bundle.conditions)
        self.names = {name: i for i, name in enumerate(bundle.conditions["names"])}
        self.batch = int(batch)
        self.sketch = ProfileSketch(self.profile) if self.profile is not None else None
        self._rows: list[Mapping[str, Any]] = []
        self._preds: list[tuple[float, int, float]] = []
        self.n_rows = self.n_predictions = 0

    def update(self, row: Mapping[str, Any], prediction: Any | None) -> None:
        """One accepted row (column -> value) and the prediction it completed, if any."""
        if self.sketch is None:
            return
        self.n_rows += 1
        self._rows.append(row)
        if prediction is not None and prediction.value is not None:
            self.n_predictions += 1
            alarm = np.nan if prediction.alarm is None else float(bool(prediction.alarm))
            code = self.names.get(str(prediction.condition), -1)
            self._preds.append((_number(prediction.value), code, alarm))
        if len(self._rows) >= self.batch:
            self._flush()

    def _flush(self) -> None:
        if self._rows:
            x = np.array([[_number(r.get(c)) for c in self.features] for r in self._rows])
            codes, distance = row_codes(self.assigner, self._rows)
            self.sketch.update(x, codes, distance=distance)
            self._rows = []
        if self._preds:
            values, codes, alarms = (np.array(v) for v in zip(*self._preds, strict=True))
            self.sketch.update_outputs(values, codes.astype(np.int64), alarms)  # NaN: no alarm rule
            self._preds = []

    def snapshot(self) -> dict[str, Any]:
        """The interval's sketch (JSON-ready); starts the next interval."""
        if self.sketch is None:
            return {
                "kind": KIND,
                "sketch": None,
                "reason": "the bundle has no reference profile; re-export it with plantml-export",
            }
        self._flush()
        out = {
            "kind": KIND,
            "rows": self.n_rows,
            "predictions": self.n_predictions,
            "sketch": self.sketch.to_dict(),
        }
        self.sketch.reset()
        self.n_rows = self.n_predictions = 0
        return out
