"""Train / val / test splits: by asset, by time, by each asset's head, or by condition.

A split is a per-row code (0 train, 1 val, 2 test; -1 rows that no split
uses, only from ``method=condition`` with ``train_values``). Windows are cut
only inside runs of rows that share asset, segment and split code, so no
window holds rows of two splits, and with ``method=asset`` no asset has
windows in two splits.

Methods (``data.split_by.method``):

- ``asset``: whole assets, seeded, by ``val_fraction`` / ``test_fraction``. With ``folds``
  (k >= 2) and ``fold`` (0 .. k-1): k-fold cross-validation over assets: the test assets
  are held out as before, the others are cut into k folds of the seeded order and fold
  ``fold`` validates (``val_fraction`` is not used); every asset validates in exactly one fold.
- ``temporal``: time quantiles over all rows (train, then val, then test).
- ``head``: per asset, the first ``head_rows`` rows (or ``head_fraction`` of its rows,
  or its rows up to the time ``head_until``) are train + val
  (their last ``val_fraction`` is val), the rest is test; assets listed in
  ``normal_assets`` are train + val entirely (last ``val_fraction`` → val).
  SKAB's protocol: ``{method: head, head_rows: 400}``.
- ``condition``: rows whose ``column`` value (default: the table's condition
  column) is in ``test_values`` are test; the rest (or only the rows in
  ``train_values``, when given) train, with the last ``val_fraction`` of each
  asset's training rows (by time) as val. CWRU's cross-load protocol:
  ``{method: condition, column: load_hp, train_values: [0, 1], test_values: [2]}``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from plantml.data.table import SensorTable
from plantml.errors import ConfigError, DataError, did_you_mean

SPLIT_CODES = {"train": 0, "val": 1, "test": 2}
METHODS = ("asset", "temporal", "head", "condition")


def split_rows(
    table: SensorTable,
    method: str = "asset",
    val_fraction: float = 0.15,
    test_fraction: float = 0.15,
    seed: int = 0,
    head_rows: int | None = None,
    normal_assets: list | None = None,
    head_fraction: float | None = None,
    head_until=None,
    column: str | None = None,
    test_values: list | None = None,
    train_values: list | None = None,
    folds: int | None = None,
    fold: int | None = None,
) -> np.ndarray:
    """Split code per row (int8).

    ``asset``: whole assets go to one split, chosen by a seeded permutation;
    each non-empty fraction gets at least one asset. ``temporal``: rows
    before the (1 - val - test) quantile of time are train, then val, then
    test; every asset can appear in each split, in disjoint time ranges.
    ``head`` and ``condition``: see the module docstring (``test_fraction``
    is not used by them).
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
    if method == "head":
        return _split_head(table, head_rows, normal_assets, val_fraction, head_fraction, head_until)
    if method == "condition":
        return _split_condition(table, column, test_values, train_values, val_fraction)
    frame = table.frame
    if (folds is not None or fold is not None) and method != "asset":
        raise ConfigError(
            f"data.split_by.folds / fold cross-validate over assets and need method=asset, "
            f"not {method}"
        )
    if method == "asset":
        assets = np.array(sorted(frame[table.asset_column].unique(), key=str), dtype=object)
        n = len(assets)
        if folds is not None or fold is not None:
            code_of = _fold_codes(n, folds, fold, test_fraction, seed, table.name)
            lookup = dict(zip(assets.tolist(), code_of.tolist(), strict=True))
            return frame[table.asset_column].map(lookup).to_numpy(np.int8)
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


def _fold_codes(
    n: int, folds: int | None, fold: int | None, test_fraction: float, seed: int, name: str
) -> np.ndarray:
    """Split code per asset (sorted order) for fold ``fold`` of ``folds`` (method=asset).

    The seeded permutation puts the test assets first (as many as ``test_fraction`` asks,
    at least one when it is > 0); the rest are cut into ``folds`` near-equal chunks in
    permutation order, and chunk ``fold`` is val. Every non-test asset is val in exactly
    one fold, and the test assets are the same in every fold.
    """
    if folds is None or fold is None:
        raise ConfigError(
            "k-fold cross-validation needs both data.split_by.folds (k >= 2) and "
            f"data.split_by.fold (0 .. k-1); got folds={folds!r}, fold={fold!r}"
        )
    if isinstance(folds, bool) or int(folds) != folds or folds < 2:
        raise ConfigError(f"data.split_by.folds must be a whole number >= 2, got {folds!r}")
    if isinstance(fold, bool) or int(fold) != fold or not 0 <= fold < folds:
        raise ConfigError(f"data.split_by.fold must be in 0 .. {int(folds) - 1}, got {fold!r}")
    n_test = max(round(test_fraction * n), 1) if test_fraction > 0 else 0
    if n - n_test < int(folds) + 1:
        raise DataError(
            f"{name} has {n} assets ({n_test} held out for test): too few for {folds} folds "
            f"that each leave assets to train on; use data.split_by.folds <= {n - n_test - 1}"
        )
    order = np.random.default_rng(seed).permutation(n)
    code_of = np.zeros(n, dtype=np.int8)
    code_of[order[:n_test]] = SPLIT_CODES["test"]
    code_of[np.array_split(order[n_test:], int(folds))[int(fold)]] = SPLIT_CODES["val"]
    return code_of


def _positions(table: SensorTable) -> tuple[np.ndarray, np.ndarray]:
    """(position of each row within its asset by time, row count of its asset)."""
    frame = table.frame
    order = np.argsort(table.durations(frame[table.time_column]), kind="stable")
    by_time = frame[[table.asset_column]].iloc[order]
    pos = np.empty(len(frame), dtype=np.int64)
    pos[order] = by_time.groupby(table.asset_column, sort=False).cumcount().to_numpy()
    size = frame.groupby(table.asset_column, sort=False)[table.asset_column].transform("size")
    return pos, size.to_numpy(np.int64)


def _tail_to_val(codes: np.ndarray, pos: np.ndarray, n: np.ndarray, val_fraction: float) -> None:
    """Rows whose position ``pos`` is in the last ``val_fraction`` of ``n`` rows become val."""
    n_val = np.round(val_fraction * n).astype(np.int64)
    codes[pos >= n - n_val] = SPLIT_CODES["val"]


def _head_sizes(
    table: SensorTable,
    size: np.ndarray,
    head_rows: int | None,
    head_fraction: float | None,
    head_until,
) -> np.ndarray:
    """Per row, the number of head rows of its asset (exactly one of the three is set)."""
    given = [
        k
        for k, v in (
            ("head_rows", head_rows),
            ("head_fraction", head_fraction),
            ("head_until", head_until),
        )
        if v is not None
    ]
    if len(given) != 1:
        raise ConfigError(
            "method=head needs exactly one of data.split_by.head_rows (rows per asset), "
            "head_fraction (share of each asset's rows) or head_until (a time: rows up to it); "
            f"got {given or 'none'} (SKAB: data.split_by.head_rows=400)"
        )
    if head_rows is not None:
        if isinstance(head_rows, bool) or int(head_rows) != head_rows or head_rows < 1:
            raise ConfigError(
                f"data.split_by.head_rows must be a whole number of rows >= 1, got {head_rows!r}"
            )
        return np.minimum(size, int(head_rows))
    if head_fraction is not None:
        if not 0 < float(head_fraction) <= 1:
            raise ConfigError(
                f"data.split_by.head_fraction must be in (0, 1], got {head_fraction!r}"
            )
        return np.maximum(np.ceil(size * float(head_fraction)), 1).astype(np.int64)
    time = table.frame[table.time_column]
    try:
        limit = pd.Timestamp(head_until) if table.is_timestamped else float(head_until)
        inside = (time <= limit).to_numpy()
    except (TypeError, ValueError) as exc:
        kind = "a timestamp such as 2024-03-01" if table.is_timestamped else "a number"
        raise ConfigError(
            f"data.split_by.head_until={head_until!r} is not {kind} like the time column "
            f"{table.time_column!r} ({exc})"
        ) from None
    assets = table.frame[table.asset_column].to_numpy()
    return pd.Series(inside).groupby(assets).transform("sum").to_numpy(np.int64)


def _split_head(
    table: SensorTable,
    head_rows: int | None,
    normal_assets: list | None,
    val_fraction: float,
    head_fraction: float | None = None,
    head_until=None,
) -> np.ndarray:
    frame = table.frame
    assets = frame[table.asset_column]
    names = [str(a) for a in assets.unique()]
    normal = [str(a) for a in (normal_assets or [])]
    unknown = [a for a in normal if a not in names]
    if unknown:
        raise ConfigError(
            f"data.split_by.normal_assets names unknown assets {unknown}; "
            f"{did_you_mean(unknown[0], names)}"
        )
    pos, size = _positions(table)
    head = _head_sizes(table, size, head_rows, head_fraction, head_until)
    is_normal = assets.astype(str).isin(normal).to_numpy()
    n_head = np.where(is_normal, size, head)
    codes = np.where(pos < n_head, SPLIT_CODES["train"], SPLIT_CODES["test"]).astype(np.int8)
    _tail_to_val(codes, np.where(pos < n_head, pos, -1), n_head, val_fraction)
    return codes


def _split_condition(
    table: SensorTable,
    column: str | None,
    test_values: list | None,
    train_values: list | None,
    val_fraction: float,
) -> np.ndarray:
    column = column or table.condition_column
    frame = table.frame
    if column is None:
        raise ConfigError(
            "data.split_by.column is not set and the data has no condition column; "
            "set data.split_by.column to the column naming the operating condition"
        )
    if column not in frame.columns:
        raise ConfigError(
            f"data.split_by.column {column!r} not found in {table.name}; "
            f"{did_you_mean(column, [str(c) for c in frame.columns])}"
        )
    if not test_values:
        raise ConfigError(
            "data.split_by.test_values is empty: list the condition values to hold out for "
            f"test (values of {column!r}), e.g. data.split_by.test_values=[2]"
        )
    values = frame[column]
    present = sorted(values.dropna().unique().tolist(), key=str)

    def as_mask(given: list, key: str) -> np.ndarray:
        keys = {_key(v) for v in given}
        missing = sorted(keys - {_key(v) for v in present}, key=str)
        if missing:
            raise DataError(
                f"data.split_by.{key} has {missing}, not among the values of {column!r} in "
                f"{table.name}: {', '.join(map(str, present))}"
            )
        chosen = [v for v in present if _key(v) in keys]
        return values.isin(chosen).to_numpy()

    is_test = as_mask(list(test_values), "test_values")
    if train_values:
        is_train = as_mask(list(train_values), "train_values")
        both = {_key(v) for v in train_values} & {_key(v) for v in test_values}
        if both:
            raise ConfigError(
                f"data.split_by.train_values and test_values share {sorted(both, key=str)}; "
                "a condition is either trained on or held out"
            )
    else:
        is_train = ~is_test
    if not is_train.any():
        raise DataError(
            f"data.split_by.test_values={list(test_values)} holds out every row of {table.name}; "
            f"keep at least one of {', '.join(map(str, present))} for training"
        )
    codes = np.full(len(frame), -1, dtype=np.int8)
    codes[is_test] = SPLIT_CODES["test"]
    codes[is_train] = SPLIT_CODES["train"]
    sub = table.replace(frame=frame.loc[is_train]) if not is_train.all() else table
    pos, size = _positions(sub)
    train_codes = codes[is_train]
    _tail_to_val(train_codes, pos, size, val_fraction)
    codes[is_train] = train_codes
    return codes


def _key(value) -> object:
    """Comparable key: numbers by value (2 == 2.0 == "2"), everything else as text."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return str(value)
    return number if np.isfinite(number) else str(value)


def assets_by_split(assets: np.ndarray, codes: np.ndarray) -> dict[str, set]:
    """The set of asset ids present in each split."""
    return {name: set(np.unique(assets[codes == c]).tolist()) for name, c in SPLIT_CODES.items()}
