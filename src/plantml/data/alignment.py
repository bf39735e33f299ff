"""Multi-rate sensors onto one regular time grid (the ``align`` cleaning step).

Faster sensors are averaged over each grid bin ``(t - period, t]``; slower ones
(and settings, conditions, RUL) are as-of joined within a tolerance, which
absorbs clock jitter and skew; events (failure, maintenance, anomaly) are kept
if they fall anywhere in the bin.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from plantml.data.table import SensorTable
from plantml.errors import ConfigError


def ticks(time: pd.Series) -> np.ndarray:
    """Time as numbers: int64 nanoseconds for timestamps (UTC), float64 otherwise."""
    if pd.api.types.is_datetime64_any_dtype(time):
        if getattr(time.dt, "tz", None) is not None:
            time = time.dt.tz_convert(None)
        return time.astype("datetime64[ns]").to_numpy().view(np.int64)
    return time.to_numpy(dtype=np.float64)


def duration(value: Any, time: pd.Series, key: str) -> int | float:
    """A period / tolerance from the config in the units of :func:`ticks`."""
    if pd.api.types.is_datetime64_any_dtype(time):
        if isinstance(value, int | float):
            raise ConfigError(
                f"data.cleaning.align.{key}={value!r} is a number but {time.name!r} holds "
                "timestamps; give a duration such as '1h' or '15min'"
            )
        try:
            amount = pd.Timedelta(value).value
        except (ValueError, TypeError):
            raise ConfigError(
                f"data.cleaning.align.{key}={value!r} is not a duration; use e.g. '1h', '15min', '30s'"
            ) from None
    else:
        if isinstance(value, str):
            raise ConfigError(
                f"data.cleaning.align.{key}={value!r} is a duration but {time.name!r} holds "
                "numbers (cycles); give a number such as 1"
            )
        amount = float(value)
    if amount <= 0:
        raise ConfigError(f"data.cleaning.align.{key} must be positive, got {value!r}")
    return amount


def align_to_grid(frame: pd.DataFrame, table: SensorTable, opts: dict):
    """Put every asset on a regular time grid (rules in :mod:`plantml.data.cleaning`).

    Returns the aligned frame, the period in the units of :func:`ticks` and
    counts of what changed (grid rows, readings averaged, grid points left empty).
    """
    asset, time = table.asset_column, table.time_column
    tcol = frame[time]
    p = duration(opts["period"], tcol, "period")
    tol = duration(opts["tolerance"], tcol, "tolerance") if opts["tolerance"] is not None else p
    exact = isinstance(p, int)  # integer nanoseconds: exact arithmetic
    tick = ticks(tcol)
    codes, uniques = pd.factorize(frame[asset])
    eps = 0 if exact else 1e-9
    k_row = -((-tick) // p) if exact else np.ceil(tick / p - eps)  # bin (g - p, g] of each row
    by_asset = pd.DataFrame({"c": codes, "t": tick}).groupby("c")["t"]
    tmin, tmax = by_asset.min().to_numpy(), by_asset.max().to_numpy()
    k0 = tmin // p if exact else np.floor(tmin / p + eps)
    k1 = -((-tmax) // p) if exact else np.ceil(tmax / p - eps)
    sizes = (k1 - k0).astype(np.int64) + 1
    if sizes.sum() > 100 * len(frame) + 1000:
        raise ConfigError(
            f"data.cleaning.align.period={opts['period']!r} would make {int(sizes.sum())} grid "
            f"rows from {len(frame)} readings; choose a longer period"
        )
    starts = np.r_[0, np.cumsum(sizes)[:-1]]
    g_code = np.repeat(np.arange(len(sizes)), sizes)
    g_k = np.repeat(k0, sizes) + (np.arange(len(g_code)) - np.repeat(starts, sizes))
    g_tick = g_k * p
    # the grid row whose bin holds each reading
    row_bin = (starts[codes] + (k_row - k0[codes])).astype(np.int64)
    order = np.argsort(g_tick, kind="stable")
    left = pd.DataFrame({"t": g_tick[order], "c": g_code[order]})
    inverse = np.empty_like(order)
    inverse[order] = np.arange(len(order))

    def asof(col: str, direction: str = "backward") -> pd.Series:
        has = frame[col].notna().to_numpy()
        right = pd.DataFrame({"t": tick[has], "c": codes[has], "v": frame[col].array[has]})
        right = right.sort_values("t", kind="stable")
        got = pd.merge_asof(left, right, on="t", by="c", tolerance=tol, direction=direction)
        return got["v"].take(inverse).reset_index(drop=True)

    events = {table.failure_column, table.maintenance_column, table.anomaly_column} - {None}
    out: dict[str, Any] = {}
    missing, aggregated = {}, 0
    n_grid = len(g_code)
    for col in frame.columns:
        if col in (asset, time):
            continue
        if col in events:
            v = frame[col].to_numpy(dtype=np.float64, na_value=0.0) > 0
            hit = np.bincount(row_bin, weights=v, minlength=n_grid) > 0
            kind = frame[col].dtype.kind
            out[col] = pd.Series(hit).astype(frame[col].dtype if kind in "iub" else np.float64)
        elif col in table.sensor_columns:
            x = frame[col].to_numpy(dtype=np.float64, na_value=np.nan)
            has = ~np.isnan(x)
            gap = np.diff(tick[has]).astype(np.float64)
            same = codes[has][1:] == codes[has][:-1]
            med = pd.Series(gap[same]).groupby(codes[has][1:][same]).median()
            fast_asset = np.zeros(len(sizes), dtype=bool)
            fast_asset[med.index.to_numpy()] = med.to_numpy() < p
            fast_row = fast_asset[codes] & has
            aggregated += int(fast_row.sum())
            sums = np.bincount(row_bin[fast_row], weights=x[fast_row], minlength=n_grid)
            cnt = np.bincount(row_bin[fast_row], minlength=n_grid)
            mean = np.divide(sums, cnt, out=np.full(n_grid, np.nan), where=cnt > 0)
            latest = (
                np.full(n_grid, np.nan)
                if fast_asset.all()
                else asof(col, opts["direction"]).to_numpy(dtype=np.float64, na_value=np.nan)
            )
            values = np.where(fast_asset[g_code], mean, latest)
            missing[col] = int(np.isnan(values).sum())
            dtype = frame[col].dtype if pd.api.types.is_float_dtype(frame[col]) else np.float64
            out[col] = values.astype(dtype)
        else:  # settings, condition, rul and any other column: latest reading within tolerance
            out[col] = asof(col)
    grid_time = _time_fromticks(g_tick, tcol, exact)
    aligned = pd.DataFrame({asset: uniques.take(g_code), time: grid_time, **out})[frame.columns]
    counts = {
        "grid_rows": n_grid,
        "input_rows": len(frame),
        "readings_aggregated": aggregated,
        "missing_by_column": missing,
    }
    return aligned, p, counts


def _time_fromticks(g_tick: np.ndarray, tcol: pd.Series, exact: bool) -> pd.Series | np.ndarray:
    """Grid ticks back in the dtype of the original time column."""
    if exact:
        t = pd.Series(g_tick.astype(np.int64).view("datetime64[ns]"))
        tz = getattr(tcol.dt, "tz", None)
        if tz is not None:
            t = t.dt.tz_localize("UTC").dt.tz_convert(tz)
        return t.astype(tcol.dtype)
    if pd.api.types.is_integer_dtype(tcol) and np.all(g_tick == np.round(g_tick)):
        return np.round(g_tick).astype(tcol.dtype)
    return g_tick
