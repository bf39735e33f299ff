"""Cleaning: raw sensor table in, a regular, gap-bounded, finite table out.

Nine steps run in this order, each configured under ``data.cleaning.<step>``
(a missing key takes its default; an unknown key is a :class:`ConfigError`)::

    sort:          {enabled: true}
    non_finite:    {enabled: true}                  # ±inf in sensors/settings -> NaN
    dedupe:        {enabled: true}                  # one row per (asset, time)
    clip:          {enabled: true, bounds: {}, action: nan}
    sanity:        {enabled: true, multiple: 50.0, action: nan}  # robust range of the training split
    despike:       {enabled: false, window: 11, n_sigmas: 6.0}
    align:         {enabled: true, period: null, tolerance: null, direction: backward}
    fill:          {enabled: true, method: ffill, max_gap: 3, mask: false, mask_as_feature: false,
                    gap_factor: 5.0}
    drop_constant: {enabled: true, dominant_fraction: 0.995}

- ``dedupe`` keeps the first non-null value of each column, the max of labels.
- ``clip.bounds`` is ``{column: [low, high]}`` (null = open); ``action: nan``
  makes out-of-range values missing (filled later), ``clip`` clamps them.
- ``sanity`` (:mod:`plantml.data.sanity`) flags values further than ``multiple``
  interquartile ranges outside a sensor's or setting's training quartiles (1e30,
  9999 sentinels); the bounds are fitted on the training split's rows and kept in
  the report (``sanity.bounds``) for the edge bundle and for an official test set.
- ``align`` (only once ``period`` is set: ``"1h"`` for timestamps, ``1`` for
  cycles) puts each asset on a grid from floor(first time) to ceil(last time).
  A sensor read faster than ``period`` on an asset is averaged over each bin
  (t - period, t]; a slower one takes its latest reading within ``tolerance``
  (default: period) at or before t (``direction: nearest``: either side).
  Settings, condition, RUL and other columns: latest at or before t within
  tolerance. Events (failure, maintenance, anomaly): max over the bin.
- ``fill`` (``ffill | interpolate | none``) fills a run of missing values only
  if it is at most ``max_gap`` rows long (null: no limit), within one asset;
  ``interpolate`` is linear in time and carries a trailing gap forward; the
  same applies to settings and the condition column (forward only). Rows
  still missing a sensor, setting or condition value are dropped (their failure /
  maintenance events move to the next kept row of the asset, failures to the previous one) and an int32
  ``segment`` column numbers the contiguous runs left per asset. A series also breaks
  at a gap in time: with ``align``, a step longer than ``max_gap + 1`` periods; without
  it, a step longer than ``gap_factor`` times the asset's typical (median) step (null:
  never), so that no window spans a stretch of missing rows.
- ``dedupe`` merging more than 1 % of the rows is a warning in the results: rows of
  different recordings sharing a time would be averaged together.
- ``drop_constant`` drops sensors whose most frequent value covers at least
  ``dominant_fraction`` of their values.

Each step reports what it changed, with counts, in a :class:`CleaningReport`
and in the ``plantml.data.cleaning`` log. Every step is vectorized over all
assets at once (numpy / groupby / ``merge_asof``); nothing loops over rows.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from plantml.data.alignment import align_to_grid, ticks
from plantml.data.sanity import Bounds, apply_bounds, fit_bounds
from plantml.data.table import SensorTable
from plantml.errors import ConfigError, DataError

log = logging.getLogger("plantml.data.cleaning")

MASK_SUFFIX = "__missing"
DEDUPE_WARN_SHARE = 0.01  # merging more rows than this share is a warning in the results

DEFAULT_CONFIG: dict[str, dict[str, Any]] = {
    "sort": {"enabled": True},
    "non_finite": {"enabled": True},
    "dedupe": {"enabled": True},
    "clip": {"enabled": True, "bounds": {}, "action": "nan"},
    "sanity": {"enabled": True, "multiple": 50.0, "action": "nan"},
    "despike": {"enabled": False, "window": 11, "n_sigmas": 6.0},
    "align": {"enabled": True, "period": None, "tolerance": None, "direction": "backward"},
    "fill": {
        "enabled": True,
        "method": "ffill",
        "max_gap": 3,
        "mask": False,
        "mask_as_feature": False,
        "gap_factor": 5.0,
    },
    "drop_constant": {"enabled": True, "dominant_fraction": 0.995},
}
_CHOICES = {
    ("clip", "action"): ("nan", "clip"),
    ("sanity", "action"): ("nan", "clip"),
    ("align", "direction"): ("backward", "nearest"),
    ("fill", "method"): ("ffill", "interpolate", "none"),
}


@dataclass
class CleaningReport:
    """What each cleaning step changed: per step a dict of counts, plus one readable line."""

    steps: dict[str, dict[str, Any]] = field(default_factory=dict)
    messages: dict[str, str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    def add(self, step: str, counts: dict[str, Any], message: str) -> None:
        """Record a step's counts and log its line."""
        self.steps[step] = counts
        self.messages[step] = message
        log.info("%s: %s", step, message)

    def warn(self, message: str) -> None:
        """Something the results must show (a large merge, ...), logged as a warning."""
        self.warnings.append(message)
        log.warning("%s", message)

    def lines(self) -> list[str]:
        """One human-readable line per step, in the order the steps ran."""
        return [f"{step}: {msg}" for step, msg in self.messages.items()]

    def to_dict(self) -> dict[str, dict[str, Any]]:
        """The counts per step (JSON-serializable)."""
        return copy.deepcopy(self.steps)


def resolve_config(config: Mapping | None) -> dict[str, dict[str, Any]]:
    """The defaults overlaid with ``config``; unknown keys raise :class:`ConfigError`."""
    if config is not None and type(config).__module__.startswith("omegaconf"):
        from omegaconf import OmegaConf

        config = OmegaConf.to_container(config, resolve=True)
    config = dict(config or {})
    unknown = sorted(set(config) - set(DEFAULT_CONFIG))
    if unknown:
        raise ConfigError(
            f"unknown data.cleaning step(s) {unknown}; valid steps: {', '.join(DEFAULT_CONFIG)}"
        )
    out = copy.deepcopy(DEFAULT_CONFIG)
    for step, given in config.items():
        if isinstance(given, bool):  # `despike: true` is shorthand for `despike: {enabled: true}`
            given = {"enabled": given}
        if given is not None and not isinstance(given, Mapping):
            raise ConfigError(f"data.cleaning.{step} must be a mapping of options, got {given!r}")
        given = dict(given or {})
        bad = sorted(set(given) - set(out[step]))
        if bad:
            raise ConfigError(
                f"unknown key(s) {bad} in data.cleaning.{step}; valid keys: {', '.join(out[step])}"
            )
        out[step].update(given)
        if not isinstance(out[step]["enabled"], bool):
            raise ConfigError(f"data.cleaning.{step}.enabled must be true or false")
    for (step, key), choices in _CHOICES.items():
        if out[step][key] not in choices:
            raise ConfigError(
                f"data.cleaning.{step}.{key}={out[step][key]!r} is not one of {list(choices)}"
            )
    return out


def clean(
    table: SensorTable,
    config: Mapping | None = None,
    fit_rows: Callable[[SensorTable], np.ndarray] | None = None,
    bounds: Bounds | None = None,
) -> tuple[SensorTable, CleaningReport]:
    """Run the cleaning steps configured in ``config`` (``data.cleaning``) on ``table``.

    ``fit_rows`` gives the rows (bool, one per row of the table it is passed) that
    the ``sanity`` bounds are fitted on (the training split; default all rows);
    ``bounds`` are bounds fitted before (an official test set reuses training's).
    Returns a new table (the input frame is never modified) and the report of
    what each step changed.
    """
    cfg = resolve_config(config)
    report = CleaningReport()
    if table.non_numeric:  # read by the source; filled or dropped like any missing value
        _report_by_column(
            report,
            "non_numeric",
            "coerced",
            table.non_numeric,
            "{total} non-numeric cells read as missing ({columns})",
        )
    frame = table.frame.reset_index(drop=True)
    period = None
    for step in DEFAULT_CONFIG:
        opts = cfg[step]
        if not opts["enabled"] and step != "sort":
            report.add(step, {"skipped": "disabled"}, "skipped (disabled)")
            continue
        if step == "align" and opts["period"] is None:
            report.add(step, {"skipped": "no period"}, "skipped (set data.cleaning.align.period)")
            continue
        if step == "align":
            frame, period = _align(frame, table, opts, report)
        elif step == "fill":
            frame, table = _fill(frame, table, opts, period, report)
        elif step == "drop_constant":
            frame, table = _drop_constant(frame, table, opts, report)
        elif step == "sanity":
            frame = _sanity(frame, table, opts, report, fit_rows, bounds)
        else:
            frame = _STEPS[step](frame, table, opts, report)
    return table.replace(frame=frame), report


# --- helpers -------------------------------------------------------------------------------------


def _series_ids(frame: pd.DataFrame, table: SensorTable) -> np.ndarray:
    """Per row, an id of its contiguous series (asset, and existing segment if any)."""
    keys = [table.asset_column]
    if table.segment_column and table.segment_column in frame.columns:
        keys.append(table.segment_column)
    return frame.groupby(keys, sort=False, dropna=False).ngroup().to_numpy()


def _run_bounds(ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per row, the first and last row index of its run of equal ``ids``."""
    n = len(ids)
    rows = np.arange(n)
    new = np.r_[True, ids[1:] != ids[:-1]]
    end = np.r_[ids[1:] != ids[:-1], True]
    first = np.maximum.accumulate(np.where(new, rows, 0))
    last = np.minimum.accumulate(np.where(end, rows, n)[::-1])[::-1]
    return first, last


def _prev_next(valid: np.ndarray, first: np.ndarray, last: np.ndarray):
    """Index of the previous / next ``valid`` row within the same run (-1 where none)."""
    n = len(valid)
    rows = np.arange(n)
    prev = np.maximum.accumulate(np.where(valid, rows, -1))
    nxt = np.minimum.accumulate(np.where(valid, rows, n)[::-1])[::-1]
    prev = np.where(prev >= first, prev, -1)
    nxt = np.where(nxt <= last, nxt, -1)
    return prev, nxt


def _fmt_counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{c}: {n}" for c, n in counts.items() if n) or "none"


def _report_by_column(report: CleaningReport, step: str, key: str, counts: dict, text: str) -> None:
    """Report a per-column count: ``{key: total, "by_column": {...}}`` and ``text`` (``{total}``, ``{columns}``)."""
    total = sum(counts.values())
    report.add(
        step,
        {key: total, "by_column": {c: n for c, n in counts.items() if n}},
        text.format(total=total, columns=_fmt_counts(counts)),
    )


# --- steps ---------------------------------------------------------------------------------------


def _sort(frame: pd.DataFrame, table: SensorTable, opts: dict, report: CleaningReport):
    """Stable sort by (asset, time); with sorting disabled, check the order instead."""
    asset, time = table.asset_column, table.time_column
    if opts["enabled"]:
        out = frame.sort_values([asset, time], kind="stable")
        moved = int(np.sum(out.index.to_numpy() != np.arange(len(out))))
        report.add("sort", {"out_of_order": moved}, f"{moved} rows were out of (asset, time) order")
        return out.reset_index(drop=True)
    codes = pd.factorize(frame[asset])[0]
    change = np.r_[0, np.flatnonzero(codes[1:] != codes[:-1]) + 1]  # first row of each run
    seen_again = np.flatnonzero(pd.Series(codes[change]).duplicated().to_numpy())
    fix = "enable data.cleaning.sort (data.cleaning.sort.enabled=true) or sort the file"
    if len(seen_again):
        row = int(change[seen_again[0]])
        raise DataError(
            f"{table.name}: the rows of asset {frame[asset].iloc[row]} ({asset!r}) are not contiguous "
            f"(they appear again at row {row}); {fix}"
        )
    t = frame[time]
    back = np.flatnonzero((codes[1:] == codes[:-1]) & (t.to_numpy()[1:] < t.to_numpy()[:-1]))
    if len(back):
        row = int(back[0]) + 1
        raise DataError(
            f"{table.name}: time is not increasing within asset {frame[asset].iloc[row]} ({asset!r}): "
            f"row {row} has {time}={t.iloc[row]} after {t.iloc[row - 1]} at row {row - 1}; {fix}"
        )
    report.add("sort", {"skipped": "disabled"}, "skipped (disabled); rows are in order")
    return frame


def _non_finite(frame: pd.DataFrame, table: SensorTable, opts: dict, report: CleaningReport):
    """±inf in sensor and setting columns becomes NaN."""
    counts = {}
    for col in table.sensor_columns + table.setting_columns:
        if pd.api.types.is_float_dtype(frame[col]):
            inf = np.isinf(frame[col].to_numpy(dtype=np.float64, na_value=np.nan))
            counts[col] = int(inf.sum())
            if counts[col]:
                frame[col] = frame[col].mask(inf)
    _report_by_column(
        report,
        "non_finite",
        "replaced",
        counts,
        "replaced {total} ±inf values with NaN ({columns})",
    )
    return frame


def _dedupe(frame: pd.DataFrame, table: SensorTable, opts: dict, report: CleaningReport):
    """Merge rows sharing (asset, time): first non-null value per column, labels by max."""
    keys = [table.asset_column, table.time_column]
    dup = frame.duplicated(keys, keep=False).to_numpy()
    n_dup = int(dup.sum())
    merged_into = 0
    if n_dup:
        part = frame[dup]
        groups = part.groupby(keys, sort=False)  # groups in order of first appearance
        merged = groups.first()  # first non-null value per column
        labels = [c for c in table.label_columns if c not in keys]
        if labels:
            merged[labels] = groups[labels].max()
        merged = merged.reset_index()[frame.columns]
        merged.index = np.flatnonzero(dup)[~part.duplicated(keys).to_numpy()]
        merged_into = len(merged)
        frame = pd.concat([frame[~dup], merged]).sort_index().reset_index(drop=True)
    report.add(
        "dedupe",
        {"duplicate_rows": n_dup, "merged_into": merged_into, "rows_removed": n_dup - merged_into},
        f"merged {n_dup} duplicate (asset, time) rows into {merged_into} "
        f"({n_dup - merged_into} rows removed)",
    )
    total = n_dup + len(frame) - merged_into
    if n_dup > DEDUPE_WARN_SHARE * total:
        report.warn(
            f"dedupe merged {n_dup} of {total} rows ({n_dup / total:.1%}) that share an asset "
            "and a time: if these are different recordings, give each its own asset id "
            "(for files: data.asset_from=file)"
        )
    return frame


def _clip(frame: pd.DataFrame, table: SensorTable, opts: dict, report: CleaningReport):
    """Values outside physically possible bounds become NaN (``action: nan``) or are clamped."""
    valid = table.sensor_columns + table.setting_columns
    counts = {}
    for col, bound in (opts["bounds"] or {}).items():
        if col not in valid:
            raise DataError(
                f"data.cleaning.clip.bounds names {col!r}, which is not a sensor or setting "
                f"column of {table.name}; valid columns: {', '.join(valid)}"
            )
        if not isinstance(bound, list | tuple) or len(bound) != 2:
            raise ConfigError(
                f"data.cleaning.clip.bounds.{col} must be [low, high] (null for open), got {bound!r}"
            )
        low, high = bound
        if low is not None and high is not None and low > high:
            raise ConfigError(f"data.cleaning.clip.bounds.{col}: low {low} > high {high}")
        s = frame[col]
        out = (s < low if low is not None else False) | (s > high if high is not None else False)
        counts[col] = int(np.sum(out))
        if counts[col]:
            frame[col] = s.mask(out) if opts["action"] == "nan" else s.clip(low, high)
    what = "set to NaN" if opts["action"] == "nan" else "clamped to the bounds"
    _report_by_column(
        report, "clip", "changed", counts, "{total} out-of-bounds values " + what + " ({columns})"
    )
    return frame


def _sanity(frame, table: SensorTable, opts: dict, report: CleaningReport, fit_rows, bounds):
    """Values beyond the robust training range become NaN or the bound (:mod:`plantml.data.sanity`)."""
    columns = [
        c
        for c in table.sensor_columns + table.setting_columns
        if pd.api.types.is_numeric_dtype(frame[c])
    ]
    if bounds is None:
        rows = np.ones(len(frame), dtype=bool)
        if fit_rows is not None:
            rows = np.asarray(fit_rows(table.replace(frame=frame)), dtype=bool)
        bounds = fit_bounds(frame, columns, rows, opts["multiple"])
    frame, counts = apply_bounds(frame, bounds, opts["action"])
    what = "set to NaN" if opts["action"] == "nan" else "clamped to the bounds"
    total = sum(counts.values())
    changed = {c: n for c, n in counts.items() if n}
    detail = "; ".join(
        f"{c}: {n} outside [{bounds[c][0]:.4g}, {bounds[c][1]:.4g}]" for c, n in changed.items()
    )
    report.add(
        "sanity",
        {
            "changed": total,
            "by_column": changed,
            "bounds": {c: list(b) for c, b in bounds.items()},
            "multiple": float(opts["multiple"]),
            "action": opts["action"],
        },
        f"{total} values beyond {opts['multiple']:g} IQR of the training range {what}"
        + (f" ({detail})" if detail else ""),
    )
    if total:
        log.warning("sanity: %d implausible values %s (%s)", total, what, detail)
    return frame


def _despike(frame: pd.DataFrame, table: SensorTable, opts: dict, report: CleaningReport):
    """Hampel filter per asset and sensor: outliers from the centred rolling median become NaN.

    The window is ``window`` consecutive readings of the sensor on one asset (rows where
    it is missing are skipped); a reading further than ``n_sigmas`` x 1.4826 x MAD from
    the window's median is a spike.
    """
    window, n_sigmas = opts["window"], float(opts["n_sigmas"])
    if not isinstance(window, int) or window < 3 or window % 2 == 0:
        raise ConfigError(f"data.cleaning.despike.window must be an odd integer >= 3, got {window}")
    ids = _series_ids(frame, table)
    offsets = np.arange(-(window // 2), window // 2 + 1)
    counts = {}
    for col in table.sensor_columns:
        # the window runs over this sensor's readings, so a slow sensor in a multi-rate
        # table (NaN between readings) still gets `window` values per median
        full = frame[col].to_numpy(dtype=np.float64, na_value=np.nan)
        read = np.flatnonzero(~np.isnan(full))
        x, sid = full[read], ids[read]
        idx = np.arange(len(x))[:, None] + offsets
        inside = (idx >= 0) & (idx < len(x))
        idx = idx.clip(0, max(len(x) - 1, 0))
        inside &= sid[idx] == sid[:, None]
        win = np.where(inside, x[idx], np.nan)
        med = _nan_row_median(win)
        mad = _nan_row_median(np.abs(win - med[:, None]))
        spike = read[np.abs(x - med) > n_sigmas * 1.4826 * mad]
        counts[col] = len(spike)
        if counts[col]:
            hit = np.zeros(len(full), dtype=bool)
            hit[spike] = True
            frame[col] = frame[col].mask(hit)
    _report_by_column(report, "despike", "spikes", counts, "{total} spikes set to NaN ({columns})")
    return frame


def _nan_row_median(win: np.ndarray) -> np.ndarray:
    """Median of each row ignoring NaN (NaN sorts last), NaN for all-NaN rows."""
    s = np.sort(win, axis=1)
    k = (~np.isnan(win)).sum(axis=1)
    rows = np.arange(len(win))
    lo, hi = np.maximum((k - 1) // 2, 0), np.maximum(k // 2, 0)
    med = (s[rows, lo] + s[rows, hi]) / 2
    return np.where(k > 0, med, np.nan)


def _align(frame: pd.DataFrame, table: SensorTable, opts: dict, report: CleaningReport):
    """The ``align`` step: :func:`~plantml.data.alignment.align_to_grid` plus its report line."""
    aligned, p, counts = align_to_grid(frame, table, opts)
    n_grid, aggregated, missing = (
        counts["grid_rows"],
        counts["readings_aggregated"],
        counts["missing_by_column"],
    )
    report.add(
        "align",
        counts,
        f"{n_grid} grid rows at period {opts['period']} from {len(frame)} rows; "
        f"{aggregated} readings averaged into bins; grid points with no reading within "
        f"tolerance: {_fmt_counts(missing)}",
    )
    return aligned, p


def _fill(frame, table: SensorTable, opts: dict, period, report: CleaningReport):
    """Bounded gap filling, then drop rows still missing and number the segments left."""
    method, max_gap = opts["method"], opts["max_gap"]
    max_gap = np.inf if max_gap is None else int(max_gap)
    seg_name = table.segment_column or "segment"
    if seg_name in frame.columns and seg_name != table.segment_column:
        raise DataError(
            f"{table.name} already has a column {seg_name!r}; rename it, cleaning writes the "
            "segment numbers there"
        )
    ids = _series_ids(frame, table)
    first, last = _run_bounds(ids)
    tick = ticks(frame[table.time_column]).astype(np.float64)
    sensors = list(table.sensor_columns)
    masks, counts = {}, {}
    filled_cols = sensors + table.setting_columns + [c for c in [table.condition_column] if c]
    for col in filled_cols:
        nan = frame[col].isna().to_numpy()
        if not nan.any():
            continue
        if opts["mask"] and col in sensors:
            masks[col + MASK_SUFFIX] = nan.astype(np.float32)
        prev, nxt = _prev_next(~nan, first, last)
        run_start = np.r_[True, ~nan[:-1] | (ids[1:] != ids[:-1])] & nan
        run_id = np.cumsum(run_start) - 1
        run_len = np.bincount(run_id[nan], minlength=int(run_start.sum()))
        ok = np.zeros(len(nan), dtype=bool)
        ok[nan] = (run_len[run_id[nan]] <= max_gap) & (prev[nan] >= 0) & (method != "none")
        counts[col] = int(ok.sum())
        if not counts[col]:
            continue
        filled = frame[col].take(np.where(ok, prev, np.arange(len(ok))))  # any dtype
        frame[col] = filled.set_axis(frame.index)
        if method == "interpolate" and pd.api.types.is_numeric_dtype(frame[col]):
            x = frame[col].to_numpy(dtype=np.float64, na_value=np.nan, copy=True)
            mid = ok & (nxt >= 0)
            tp, tn = tick[prev[mid]], tick[nxt[mid]]
            x[mid] = x[prev[mid]] + (tick[mid] - tp) / (tn - tp) * (x[nxt[mid]] - x[prev[mid]])
            frame[col] = x.astype(frame[col].dtype if frame[col].dtype.kind == "f" else np.float64)
    if masks:
        frame = pd.concat([frame, pd.DataFrame(masks, index=frame.index)], axis=1)
        if opts["mask_as_feature"]:
            table = table.replace(frame=frame, sensor_columns=sensors + list(masks))
    keep = frame[filled_cols].notna().all(axis=1).to_numpy()
    if not keep.any():
        worst = frame[filled_cols].isna().sum().sort_values(ascending=False).head(5)
        raise DataError(
            f"{table.name}: every row still misses a sensor, setting or condition value after "
            f"filling (most missing: "
            f"{worst.to_dict()}); raise data.cleaning.fill.max_gap, bound fewer values "
            "(clip/despike), or drop those sensors"
        )
    moved = lost = 0
    if not keep.all():
        frame, moved, lost = _carry_events(frame, table, keep)
    asset_ids = pd.factorize(frame[table.asset_column])[0]
    new = np.r_[True, ids[1:] != ids[:-1]] | np.r_[True, ~keep[:-1]]
    if period is not None:
        new[1:] |= np.diff(tick) > (max_gap + 1) * period
        gaps = 0
    else:
        gaps = _long_gaps(tick, ids, opts["gap_factor"])
        new[1:] |= gaps
        gaps = int(gaps.sum())
    new &= keep
    frame = frame[keep].reset_index(drop=True)
    new, asset_ids = new[keep], asset_ids[keep]
    seg = np.cumsum(new) - 1
    asset_first = np.maximum.accumulate(
        np.where(np.r_[True, asset_ids[1:] != asset_ids[:-1]], np.arange(len(seg)), 0)
    )
    frame[seg_name] = (seg - seg[asset_first]).astype(np.int32)
    dropped = int((~keep).sum())
    total = sum(counts.values())
    report.add(
        "fill",
        {
            "filled": total,
            "filled_by_column": {c: n for c, n in counts.items() if n},
            "mask_columns": len(masks),
            "rows_dropped": dropped,
            "segments": int(new.sum()),
            "gaps_split": gaps,
            "events_moved": moved,
            "events_lost": lost,
        },
        f"{method} filled {total} values (max_gap {opts['max_gap']}; {_fmt_counts(counts)}); "
        f"dropped {dropped} rows still missing; {int(new.sum())} segments"
        + (f" ({gaps} split at gaps over {opts['gap_factor']}x the typical step)" if gaps else "")
        + "; "
        f"{moved} events moved off dropped rows" + (f", {lost} lost" if lost else ""),
    )
    return frame, table.replace(frame=frame, segment_column=seg_name)


def _long_gaps(tick: np.ndarray, ids: np.ndarray, factor: float | None) -> np.ndarray:
    """(n - 1,) bool: the step to row i + 1 is within one series and over ``factor`` times
    that series' median step (never when ``factor`` is None)."""
    same = ids[1:] == ids[:-1]
    if factor is None or not same.any():
        return np.zeros(max(len(ids) - 1, 0), dtype=bool)
    if not float(factor) > 1:
        raise ConfigError(f"data.cleaning.fill.gap_factor must be > 1 (or null), got {factor}")
    steps = np.diff(tick)
    typical = pd.Series(steps[same]).groupby(ids[1:][same]).median()
    limit = typical.reindex(ids[1:]).to_numpy() * float(factor)
    return same & (steps > limit)


def _carry_events(frame: pd.DataFrame, table: SensorTable, keep: np.ndarray):
    """Move events off rows about to be dropped, keeping them in the right life.

    A failure moves to the last kept row before it (the last observation of
    the failing life); a maintenance to the first kept row after it (the
    first of the new life). Either falls back to the other side.
    """
    asset_ids = pd.factorize(frame[table.asset_column])[0]
    first, last = _run_bounds(asset_ids)
    prev, nxt = _prev_next(keep, first, last)
    moved = lost = 0
    for col, backwards in ((table.failure_column, True), (table.maintenance_column, False)):
        if col is None:
            continue
        ev = frame[col].to_numpy(dtype=np.float64, na_value=0.0) > 0
        rows = np.flatnonzero(ev & ~keep)
        if not len(rows):
            continue
        first_choice, fallback = (prev, nxt) if backwards else (nxt, prev)
        target = np.where(first_choice[rows] >= 0, first_choice[rows], fallback[rows])
        lost += int((target < 0).sum())
        moved += int((target >= 0).sum())
        values = frame[col].to_numpy().copy()
        values[target[target >= 0]] = 1
        frame[col] = values
    if lost:
        log.warning("%d failure/maintenance events were on assets with no row left", lost)
    return frame, moved, lost


def _drop_constant(frame, table: SensorTable, opts: dict, report: CleaningReport):
    """Drop sensors whose most frequent value covers >= dominant_fraction of their values."""
    frac = float(opts["dominant_fraction"])
    sensors = [c for c in table.sensor_columns if not c.endswith(MASK_SUFFIX)]
    drop = []
    for col in sensors:
        counts = frame[col].value_counts(dropna=True)
        if not len(counts) or counts.iloc[0] >= frac * counts.sum():
            drop.append(col)
    if len(drop) == len(sensors):
        raise DataError(
            f"{table.name}: every sensor is constant or nearly (one value covers >= {frac} of "
            f"the rows): {', '.join(drop)}; raise data.cleaning.drop_constant.dominant_fraction "
            "or disable data.cleaning.drop_constant"
        )
    gone = drop + [c + MASK_SUFFIX for c in drop if c + MASK_SUFFIX in frame.columns]
    frame = frame.drop(columns=gone)
    kept = [c for c in table.sensor_columns if c not in gone]
    report.add(
        "drop_constant",
        {"dropped": len(drop), "columns": drop},
        f"dropped {len(drop)} near-constant sensors" + (f": {', '.join(drop)}" if drop else ""),
    )
    return frame, table.replace(frame=frame, sensor_columns=kept)


_STEPS = {
    "sort": _sort,
    "non_finite": _non_finite,
    "dedupe": _dedupe,
    "clip": _clip,
    "despike": _despike,
}
