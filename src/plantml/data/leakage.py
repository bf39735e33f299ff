"""Columns that look like labels, found before they leak into the model's inputs.

When ``data.feature_columns`` is not given, every other numeric column becomes a
feature, including columns that are really other labels (a failure-mode flag, an
event code, a second target). :func:`find_label_like` inspects the candidates:

- **strong** evidence (the run is refused): a code (whole numbers, few values) that
  separates a per-row (anomaly) label's classes perfectly on its own, or a 0/1 flag
  that is almost always 0 and set mostly where the label is set, or (RUL labels) a
  column that moves in lock-step with the label (|correlation| >= 0.999);
- **weak** evidence (a warning in the run log and the results): a measurement that
  separates the anomaly label perfectly (a real sensor can show a fault that
  plainly), or a name that reads like a label (``fail``, ``fault``, ``label``,
  ``target``, ``anomaly``, ``alarm``...).

The fix is named in the error: ``data.exclude_columns=[...]``, or list the inputs
explicitly with ``data.feature_columns=[...]`` (which skips this check).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import pandas as pd

LABEL_NAME = re.compile(
    r"(^|[^a-z])(fail\w*|fault\w*|label\w*|target\w*|anomal\w*|alarm\w*|broken|defect\w*|"
    r"breakdown\w*|rul|ttf|time_?to_?failure|outcome|error_?code)($|[^a-z])"
)


@dataclass(frozen=True)
class LabelLike:
    """A candidate feature that looks like a label: its name, why, and how sure."""

    column: str
    reason: str
    strong: bool


def _is_flag(values: np.ndarray) -> bool:
    finite = values[np.isfinite(values)]
    return len(finite) > 0 and bool(np.isin(finite, (0.0, 1.0)).all())


def _is_code(values: np.ndarray, max_values: int = 10) -> bool:
    """Whole numbers with few distinct values: a flag, a state or an event code."""
    finite = values[np.isfinite(values)]
    return (
        bool(len(finite))
        and bool(np.all(finite == np.round(finite)))
        and (len(np.unique(finite)) <= max_values)
    )


def _separates(values: np.ndarray, label: np.ndarray) -> bool:
    """True when a threshold on ``values`` splits the 0/1 ``label`` perfectly."""
    ok = np.isfinite(values)
    pos, neg = values[ok & (label == 1)], values[ok & (label == 0)]
    if len(pos) < 5 or len(neg) < 5 or np.ptp(values[ok]) == 0:
        return False
    return bool(pos.min() > neg.max() or pos.max() < neg.min())


def find_label_like(
    frame: pd.DataFrame, candidates: list[str], label_column: str | None, label_kind: str
) -> list[LabelLike]:
    """Candidate features that look like labels, strongest first (see the module doc)."""
    found: list[LabelLike] = []
    label = None
    if label_column is not None and label_column in frame.columns:
        label = pd.to_numeric(frame[label_column], errors="coerce").to_numpy(np.float64)
    binary_label = label is not None and label_kind in ("failure", "anomaly") and _is_flag(label)
    for col in candidates:
        values = pd.to_numeric(frame[col], errors="coerce").to_numpy(np.float64)
        reason, weak = None, None
        if binary_label:
            # a failure label marks one row per failure (the most worn): a sensor may well
            # peak there, and a real measurement can show an anomaly plainly (a flow that
            # drops to 0), so perfect separation is proof only for a code with few values
            if label_kind == "anomaly" and _separates(values, label):
                if _is_code(values):
                    reason = f"this code separates {label_column!r} = 0 from 1 perfectly"
                else:
                    weak = (
                        f"it alone separates {label_column!r} = 0 from 1 perfectly; check "
                        "that it is a measurement, not a label"
                    )
            elif _is_flag(values):
                ones = values == 1
                share = float(ones.mean())
                if 0 < share < 0.1 and float((label[ones] == 1).mean()) >= 0.5:
                    reason = (
                        f"it is a rare 0/1 flag ({share:.1%} ones) set mostly where "
                        f"{label_column!r} is set"
                    )
        elif label is not None and label_kind == "rul":
            ok = np.isfinite(values) & np.isfinite(label)
            if ok.sum() > 2 and np.std(values[ok]) > 0 and np.std(label[ok]) > 0:
                r = float(np.corrcoef(values[ok], label[ok])[0, 1])
                if abs(r) >= 0.999:
                    reason = f"it moves in lock-step with {label_column!r} (correlation {r:+.4f})"
        if reason:
            found.append(LabelLike(col, reason, strong=True))
        elif weak:
            found.append(LabelLike(col, weak, strong=False))
        elif LABEL_NAME.search(col.lower()):
            found.append(LabelLike(col, "its name reads like a label", strong=False))
    return sorted(found, key=lambda f: not f.strong)
