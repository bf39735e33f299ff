"""Train / val / test splits: by asset (grouped, seeded) or by time (temporal hold-out).

A split is a per-row code (0 train, 1 val, 2 test). Windows are cut only
inside runs of rows that share asset, segment and split code, so no window
holds rows of two splits, and with ``method=asset`` no asset has windows in
two splits.
"""

from __future__ import annotations

import numpy as np

from plantml.data.table import SensorTable
from plantml.errors import ConfigError, DataError

SPLIT_CODES = {"train": 0, "val": 1, "test": 2}
METHODS = ("asset", "temporal")


def split_rows(
    table: SensorTable,
    method: str = "asset",
    val_fraction: float = 0.15,
    test_fraction: float = 0.15,
    seed: int = 0,
) -> np.ndarray:
    """Split code per row (int8).

    ``asset``: whole assets go to one split, chosen by a seeded permutation;
    each non-empty fraction gets at least one asset. ``temporal``: rows
    before the (1 - val - test) quantile of time are train, then val, then
    test; every asset can appear in each split, in disjoint time ranges.
    """
    if method not in METHODS:
        raise ConfigError(
            f"unknown data.split_by.method {method!r}; use one of {', '.join(METHODS)}"
        )
    for name, frac in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if not 0 <= frac < 1:
            raise ConfigError(f"data.split_by.{name} must be in [0, 1), got {frac}")
    if val_fraction + test_fraction >= 1:
        raise ConfigError(
            f"data.split_by.val_fraction + test_fraction = {val_fraction + test_fraction:.2f} "
            "leaves nothing to train on; keep their sum below 1"
        )
    frame = table.frame
    if method == "asset":
        assets = np.array(sorted(frame[table.asset_column].unique(), key=str), dtype=object)
        n = len(assets)
        # each non-empty fraction gets at least one asset
        n_val = max(round(val_fraction * n), 1) if val_fraction > 0 else 0
        n_test = max(round(test_fraction * n), 1) if test_fraction > 0 else 0
        if n - n_val - n_test < 1:
            raise DataError(
                f"{table.name} has {n} assets: too few to hold out {n_val} for val and "
                f"{n_test} for test and still train; add assets or use data.split_by.method=temporal"
            )
        order = np.random.default_rng(seed).permutation(n)
        code_of = np.zeros(n, dtype=np.int8)
        code_of[order[:n_val]] = 1
        code_of[order[n_val : n_val + n_test]] = 2
        lookup = dict(zip(assets.tolist(), code_of.tolist(), strict=True))
        return frame[table.asset_column].map(lookup).to_numpy(np.int8)
    time = table.durations(frame[table.time_column])
    t_val, t_test = np.quantile(time, [1 - val_fraction - test_fraction, 1 - test_fraction])
    codes = np.zeros(len(frame), dtype=np.int8)
    if val_fraction > 0:
        codes[time >= t_val] = 1
    if test_fraction > 0:
        codes[time >= t_test] = 2
    return codes


def assets_by_split(assets: np.ndarray, codes: np.ndarray) -> dict[str, set]:
    """The set of asset ids present in each split."""
    return {name: set(np.unique(assets[codes == c]).tolist()) for name, c in SPLIT_CODES.items()}
