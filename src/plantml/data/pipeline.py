"""source ─► clean ─► conditions ─► targets ─► split ─► scale ─► windows.

:class:`DataPipeline` runs the steps once and hands the result, a
:class:`PreparedData`, to the data module. Everything learned from data
(kept sensors, condition clusters, scaling statistics) is learned on the
training split and reused unchanged for val, test and an official test set.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from plantml.data.cleaning import clean
from plantml.data.conditions import OperatingConditions
from plantml.data.scaling import Scaler
from plantml.data.sources.base import Source
from plantml.data.splits import SPLIT_CODES, split_rows
from plantml.data.state import add_state_features
from plantml.data.table import SensorTable
from plantml.data.targets import class_names, row_targets
from plantml.data.windows import WindowIndex, run_starts, window_ends
from plantml.errors import ConfigError, DataError

log = logging.getLogger(__name__)


@dataclass
class PreparedData:
    """Everything the data module serves, plus what export and reports need.

    ``features`` is (rows, channels) float32, scaled, ordered by asset, segment
    and time; ``frame`` is the cleaned table in the same row order.
    """

    features: np.ndarray
    frame: pd.DataFrame
    table: SensorTable
    feature_names: list[str]
    condition_names: list[str]
    asset_names: list
    windows: dict[str, WindowIndex]
    window_length: int
    target_kind: str
    conditions: OperatingConditions
    scaler: Scaler
    cleaning: dict = field(default_factory=dict)
    fingerprint: str = ""
    class_names: list[str] = field(default_factory=list)  # target kind class: code i → name
    warnings: list[str] = field(default_factory=list)  # for the results: label-like inputs, merges

    def summary(self) -> dict:
        out = {
            "rows": len(self.frame),
            "assets": len(self.asset_names),
            "features": list(self.feature_names),
            "conditions": list(self.condition_names),
            "window_length": self.window_length,
        }
        for split, index in self.windows.items():
            out[f"{split}_windows"] = len(index)
            if self.target_kind not in ("rul", "class") and len(index):
                out[f"{split}_positive_fraction"] = float(np.mean(index.targets > 0.5))
        return out


def _runs(table: SensorTable, *keys: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(asset names, asset code per row, first row of each row's contiguous run).

    A run is a stretch of rows sharing asset, segment and any extra ``keys``
    (the split); windows never cross a run boundary.
    """
    assets = table.frame[table.asset_column].to_numpy().astype(str)
    asset_names, asset_codes = np.unique(assets, return_inverse=True)
    keys = (asset_codes, *keys)
    if table.segment_column:
        keys = (*keys, table.frame[table.segment_column].to_numpy())
    return asset_names, asset_codes, run_starts(*keys)


def _options(cfg: Mapping | None, defaults: dict, where: str) -> dict:
    cfg = dict(cfg or {})
    unknown = sorted(set(cfg) - set(defaults))
    if unknown:
        raise ConfigError(
            f"unknown key(s) {unknown} in data.{where}; valid keys: {', '.join(sorted(defaults))}"
        )
    return {**defaults, **cfg}


class DataPipeline:
    """Configured data steps (each argument is the matching ``data.*`` config block)."""

    def __init__(
        self,
        source: Source,
        cleaning: Mapping | None = None,
        conditions: Mapping | None = None,
        split_by: Mapping | None = None,
        scaling: Mapping | None = None,
        window: Mapping | None = None,
        target: Mapping | None = None,
        include_settings: bool = False,
        seed: int = 0,
        state_features: list[str] | None = None,
    ):
        self.source = source
        self.cleaning = dict(cleaning or {})
        self.conditions_cfg = _options(
            conditions,
            {"column": None, "settings": None, "n_clusters": None, "exclude_from_training": []},
            "conditions",
        )
        self.split_cfg = _options(
            split_by,
            {
                "method": "asset",
                "val_fraction": 0.15,
                "test_fraction": 0.15,
                "head_rows": None,  # method=head: one of head_rows, head_fraction, head_until
                "head_fraction": None,
                "head_until": None,
                "normal_assets": None,  # method=head; default: the source's normal_assets
                "column": None,  # method=condition; default: the condition column
                "test_values": None,  # method=condition
                "train_values": None,  # method=condition
                "folds": None,  # method=asset: k-fold cross-validation over assets (k)
                "fold": None,  # method=asset: which fold validates (0 .. k-1)
            },
            "split_by",
        )
        self.scaling_cfg = _options(
            scaling, {"method": "standard", "per_condition": False}, "scaling"
        )
        self.window_cfg = _options(
            window,
            {"length": 30, "stride": 1, "eval_stride": 1, "last_only": False},
            "window",
        )
        self.target_cfg = _options(
            target,
            {
                "kind": "rul",
                "horizon": None,
                "rul_cap": None,
                "label_column": None,
                "classes": None,
            },
            "target",
        )
        self.include_settings = include_settings
        self.state_features = list(state_features or [])
        self.seed = seed
        self.fitted: PreparedData | None = None

    @property
    def length(self) -> int:
        return int(self.window_cfg["length"])

    def prepare(self) -> PreparedData:
        """Read, clean and split the training data; fit conditions and scaling on train."""
        raw = self.source.load("train")
        split_cfg = dict(self.split_cfg)
        if split_cfg["normal_assets"] is None:
            split_cfg["normal_assets"] = getattr(self.source, "normal_assets", None)

        def train_rows_of(t: SensorTable) -> np.ndarray:  # what the sanity bounds are fitted on
            return split_rows(t, seed=self.seed, **split_cfg) == SPLIT_CODES["train"]

        table, report = clean(raw, self.cleaning, train_rows_of)  # logs what each step changed
        table = table.replace(frame=table.frame.reset_index(drop=True))
        n_clusters = self.conditions_cfg["n_clusters"]
        if n_clusters is None:
            n_clusters = getattr(self.source, "n_conditions", 1)
        codes_split = split_rows(table, seed=self.seed, **split_cfg)
        train_rows = codes_split == SPLIT_CODES["train"]
        conditions = OperatingConditions(
            column=self.conditions_cfg["column"],
            settings=self.conditions_cfg["settings"],
            n_clusters=n_clusters,
            seed=self.seed,
        ).fit(table, train_rows)
        excluded = self._excluded_codes(conditions)
        cond = conditions.assign(table)
        if excluded:
            # leave-one-condition-out: the model (and its scaling) never see these conditions
            train_rows &= ~np.isin(cond, excluded)
        feature_names = list(table.sensor_columns)
        if self.include_settings:
            feature_names += [c for c in table.setting_columns if c not in feature_names]
        table, state = add_state_features(table, self.state_features)
        feature_names += state
        skip = [i for i, c in enumerate(feature_names) if c.endswith("__missing")]
        scaler = Scaler(self.scaling_cfg["method"], self.scaling_cfg["per_condition"], skip=skip)
        raw_x = self._feature_matrix(table, feature_names)
        scaler.fit(raw_x[train_rows], cond[train_rows], len(conditions.names))
        asset_names, asset_codes, starts = _runs(table, codes_split)
        y = row_targets(table, **self._target_options())
        unlabelled = self.target_cfg["kind"] == "anomaly" and not table.anomaly_column
        if unlabelled:
            y = self._assume_normal(y, codes_split)
        windows = {}
        for split, code in SPLIT_CODES.items():
            stride = (
                self.window_cfg["stride"] if split == "train" else self.window_cfg["eval_stride"]
            )
            ends = window_ends(starts, self.length, stride)
            ends = ends[codes_split[ends] == code]
            if not (unlabelled and split == "test"):  # unlabelled test windows are scored
                ends = ends[np.isfinite(y[ends])]
            if excluded and split in ("train", "val"):
                ends = ends[~np.isin(cond[ends], excluded)]
            if split != "train" and self.window_cfg["last_only"]:
                ends = ends[np.r_[asset_codes[ends][1:] != asset_codes[ends][:-1], True]]
            windows[split] = WindowIndex(
                ends, y[ends].astype(np.float32), cond[ends], asset_codes[ends].astype(np.int64)
            )
        self._check_windows(table, windows, starts)
        self._check_classes(table, windows)
        self.fitted = PreparedData(
            features=scaler.transform(raw_x, cond),
            frame=table.frame,
            table=table,
            feature_names=feature_names,
            condition_names=conditions.names,
            asset_names=asset_names.tolist(),
            windows=windows,
            window_length=self.length,
            target_kind=self.target_cfg["kind"],
            conditions=conditions,
            scaler=scaler,
            cleaning=report.to_dict(),
            fingerprint=self.source.fingerprint("train"),
            class_names=self._class_names(table),
            warnings=[*raw.notes, *report.warnings],
        )
        log.info("model inputs (%d): %s", len(feature_names), ", ".join(feature_names))
        return self.fitted

    @staticmethod
    def _assume_normal(y: np.ndarray, codes_split: np.ndarray) -> np.ndarray:
        """Unlabelled anomaly data: train and val rows are normal operation (label 0),
        the test part stays unlabelled (NaN) and is scored without detection metrics."""
        log.warning(
            "no anomaly label column (data.label_column): training and validation windows are "
            "taken as normal operation (data.split_by chooses them, e.g. method=head with "
            "head_rows, head_fraction or head_until); the test part is scored without labels"
        )
        fit = np.isin(codes_split, [SPLIT_CODES["train"], SPLIT_CODES["val"]])
        return np.where(fit, 0.0, y)

    def _target_options(self) -> dict:
        """``data.target`` as :func:`row_targets` takes it (label_column defaults to ``fault``)."""
        options = dict(self.target_cfg)
        if options["label_column"] is None:
            options.pop("label_column")
        return options

    def _class_names(self, table: SensorTable) -> list[str]:
        """Names of the class codes (target kind ``class``), else []."""
        if self.target_cfg["kind"] != "class":
            return []
        if self.target_cfg["classes"]:
            return [str(c) for c in self.target_cfg["classes"]]
        return class_names(table, self.target_cfg["label_column"] or "fault")

    def prepare_official_test(self) -> PreparedData:
        """The source's official test set, prepared with what was learned on train.

        Scores the last window of each asset; histories shorter than the
        window are edge-padded (the usual C-MAPSS protocol).
        """
        fitted = self.fitted or self.prepare()
        cleaning = {**self.cleaning, "drop_constant": {"enabled": False}}
        bounds = fitted.cleaning.get("sanity", {}).get("bounds")  # training's, not refitted
        table, report = clean(self.source.load("test"), cleaning, bounds=bounds)
        table = table.replace(frame=table.frame.reset_index(drop=True))
        table, _ = add_state_features(table, self.state_features)
        missing = [c for c in fitted.feature_names if c not in table.frame.columns]
        if missing:
            raise DataError(f"the test data lacks the training features {missing}")
        cond = fitted.conditions.assign(table)
        features = fitted.scaler.transform(self._feature_matrix(table, fitted.feature_names), cond)
        asset_names, asset_codes, starts = _runs(table)
        last = np.flatnonzero(np.r_[asset_codes[1:] != asset_codes[:-1], True])
        y = row_targets(table, **self._target_options())
        if fitted.class_names:  # the codes of the training classes, not the test set's own
            y = row_targets(table, **{**self._target_options(), "classes": fitted.class_names})
        index = WindowIndex(
            last,
            y[last].astype(np.float32),
            cond[last],
            asset_codes[last].astype(np.int64),
            starts=starts[last],
        )
        short = int(np.sum(last - starts[last] + 1 < self.length))
        if short:
            log.info(
                "official test: %d of %d assets are shorter than the window: edge-padded",
                short,
                len(last),
            )
        return PreparedData(
            features=features,
            frame=table.frame,
            table=table,
            feature_names=fitted.feature_names,
            condition_names=fitted.condition_names,
            asset_names=asset_names.tolist(),
            windows={"test": index},
            window_length=self.length,
            target_kind=fitted.target_kind,
            conditions=fitted.conditions,
            scaler=fitted.scaler,
            cleaning=report.to_dict(),
            fingerprint=self.source.fingerprint("test"),
            class_names=fitted.class_names,
        )

    def _excluded_codes(self, conditions: OperatingConditions) -> list[int]:
        """Codes of ``data.conditions.exclude_from_training`` (checked against the known names)."""
        names = [str(n) for n in self.conditions_cfg["exclude_from_training"] or []]
        unknown = [n for n in names if n not in conditions.names]
        if unknown:
            raise ConfigError(
                f"data.conditions.exclude_from_training names unknown conditions {unknown}; "
                f"the conditions are: {', '.join(conditions.names)}"
            )
        if names and len(names) >= len(conditions.names):
            raise ConfigError(
                "data.conditions.exclude_from_training leaves no condition to train on"
            )
        return [conditions.names.index(n) for n in names]

    def _feature_matrix(self, table: SensorTable, names: list[str]) -> np.ndarray:
        x = table.frame[names].to_numpy(np.float64)
        bad = ~np.isfinite(x)
        if bad.any():
            col = int(np.argmax(bad.sum(0)))
            rows = np.flatnonzero(bad[:, col])
            asset = table.frame[table.asset_column].iloc[rows[0]]
            raise DataError(
                f"{int(bad.sum())} NaN/inf values remain in the features of {table.name} "
                f"(most in {names[col]!r}: {len(rows)}, first on asset {asset!r}); "
                "enable data.cleaning.fill (and non_finite), or widen data.cleaning.fill.max_gap"
            )
        return x

    def _check_classes(self, table: SensorTable, windows: dict[str, WindowIndex]) -> None:
        """Failure targets: train and val need positive and negative windows (else no AUPRC).

        Fails before training with what each split holds and what to change; a test
        split without one of the classes is only a warning (some metrics stay empty).
        """
        if self.target_cfg["kind"] != "failure":
            return
        counts = {
            split: (int((w.targets > 0.5).sum()), int((w.targets <= 0.5).sum()))
            for split, w in windows.items()
        }
        shown = "; ".join(
            f"{split}: {pos} positive / {neg} negative windows"
            for split, (pos, neg) in counts.items()
        )
        horizon = self.target_cfg["horizon"]
        needed = ["train"] + (["val"] if self.split_cfg["val_fraction"] > 0 else [])
        for split in ["train", "val", "test"]:
            pos, neg = counts[split]
            if (pos and neg) or (split not in needed and not pos + neg):
                continue
            missing = "positive" if not pos else "negative"
            if not pos:
                why = f"no {split} window has a failure within data.target.horizon={horizon}"
                fix = (
                    f"{self.source.more_data_hint}, lengthen data.target.horizon, or give the "
                    "split more assets (data.split_by.val_fraction / test_fraction)"
                )
                if not any(p for p, _ in counts.values()):
                    why = f"{table.name} has no failure within the horizon in any split"
                    fix = (
                        f"check the failure labels ({table.failure_column or table.rul_column!r}), "
                        f"{self.source.more_data_hint}, or lengthen data.target.horizon"
                    )
            else:
                why = f"every {split} window is a failure within data.target.horizon={horizon}"
                fix = (
                    "shorten data.target.horizon or check the failure labels (a failure is one "
                    "event on the row where the asset failed, not a flag on every row)"
                )
            message = (
                f"the {split} split has no {missing} windows ({shown}): {why}; the failure task "
                f"needs both classes to learn and to score (AUPRC, the alarm threshold); {fix}"
            )
            if split in needed:
                raise DataError(message)
            log.warning("%s", message.replace("; the failure task needs", "; metrics that need"))

    def _check_windows(self, table: SensorTable, windows: dict, starts: np.ndarray) -> None:
        """Warn about histories too short for a window; fail when a split gets none."""
        first = np.flatnonzero(np.r_[True, starts[1:] != starts[:-1]])
        lengths = np.diff(np.r_[first, len(starts)])
        short = int((lengths < self.length).sum())
        if short:
            log.warning(
                "%d of %d contiguous runs (asset, segment, split) are shorter than the window "
                "(%d rows) and give no windows",
                short,
                len(lengths),
                self.length,
            )
        needed = ["train"] + (["val"] if self.split_cfg["val_fraction"] > 0 else [])
        for split in needed:
            if len(windows[split]):
                continue
            if self.length > lengths.max():
                raise DataError(
                    f"data.window.length={self.length} is longer than every asset's history "
                    f"in {table.name} (the longest contiguous run is {lengths.max()} rows); "
                    f"use data.window.length <= {lengths.max()}"
                )
            raise DataError(
                f"no {split} windows: the {split} assets have no window of {self.length} rows "
                "with a known target; shorten data.window.length, change data.target.horizon "
                "or the split fractions (data.split_by)"
            )
