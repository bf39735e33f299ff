"""The edge bundle: a folder with ``model.onnx`` and ``manifest.json``.

An edge device runs a bundle with numpy, onnxruntime and the Python standard
library only. ``manifest.json`` (format version 1) holds::

    {
      "format": "plantml-edge-bundle", "format_version": 1,
      "name": str, "version": str, "created": ISO-8601 str, "plantml_version": str,
      "model": {"file": "model.onnx", "input": "window", "output": "prediction", "opset": int,
                "exporter": "torchscript"|"dynamo", "variant": str,
                "per_window": bool|null,             # optional, see "One window per call" below
                ...other keys allowed},
          # ONNX input "window": float32 (batch, window_length, n_features), already normalized.
          # ONNX output "prediction": float32 (batch,) or (batch,1) -- the FINAL prediction
          # (failure probability, RUL in time units, anomaly score): post-processing is in the graph.
      "input": {
        "asset_column": str | null,           # null: trained without asset ids; every input
                                               # (a file, a stream) is one asset
        "time_column": str,
        "time_kind": "number" | "datetime",   # datetime: ISO strings in files, compared as POSIX seconds
        "sampling_period": float | null,       # seconds (datetime) or time units (number) between rows
        "max_gap": float | null,               # a step between consecutive accepted rows of one asset
                                               # LARGER than this restarts that asset's window (null: never)
        "feature_columns": [str, ...],         # model channels, in order
        "dtypes": {col: "float32", ...},
        "window_length": int, "stride": int,   # stride: emit a prediction every `stride` full windows
                                               # (1 = every row once the window is full)
        "valid_range": {"bounds": {col: [low|null, high|null]}, "action": "nan"|"clip"}
                                               # optional: the range training accepted per feature
      },
      "normalization": {"method": str, "per_condition": bool,
                        "offset": [[float]*n_features]*(n_conditions+1), "scale": same},
                        # last row = global statistics
      "conditions": {"mode": "single"|"column"|"cluster", "column": str|null, "settings": [str]|null,
                     "names": [str], "categories": [str], "center": [float]|null,
                     "scale": [float]|null, "centroids": [[float]]|null},
      "task": {"kind": "rul"|"failure"|"anomaly"|"class", "output_name": str, "description": str,
               "unit": str|null, "threshold": float|null, "alarm_when": "above"|"below"|null,
               "interval": {...} | absent,        # optional (RUL): conformal prediction intervals
               "calibration": {...} | absent,     # optional (failure): informational, see below
               ...},
      "files": {"model.onnx": "<sha256 hex>", ...every other file of the bundle except manifest.json},
      "manifest_sha256": "<sha256 hex of the manifest's canonical JSON without this key>",
      "lineage": {...}, "metrics": {...},      # free-form, informational
      "reference_profile": "reference_profile.json"   # optional: what training looked like, per
                                               # condition (plantml.monitoring.profile); listed in
                                               # "files" like every file. Bundles without it load
                                               # and run; monitoring needs it.
    }

Semantics (one implementation, :mod:`plantml.core`, used by training and the device):

- Condition code per row (:mod:`plantml.core.conditions`): mode ``single`` -> 0; ``column``
  -> index of the value in ``categories``, compared as text, or by number (``1`` matches
  ``"1.0"``); unknown or missing -> -1 ("unseen"); ``cluster`` -> nearest centroid to
  ``nan_to_num((settings - center) / scale)``.
- Normalization (:mod:`plantml.core.normalize`): row ``code`` of offset/scale when
  ``per_condition`` and the code is known, else the last (global) row;
  ``((x - offset) / scale)`` in float64, then cast to float32.
- Windows (:mod:`plantml.core.windows`): per asset, consecutive accepted rows in time
  order form a run; a step larger than ``max_gap`` starts a new run. A window of
  ``window_length`` rows ends at a row once the run holds that many rows; the k-th
  complete window of a run (k = 0, 1, ...) is emitted when ``k % stride == 0``, counted
  forward from the run's start (training keeps the same windows of each of its runs).
- Valid range (optional, :mod:`plantml.core.valid_range`): a feature value outside its
  bounds rejects the row (``action: nan``, as training made it missing) or is clamped
  (``clip``); bundles without it accept any finite value.
- One window per call: a window's prediction never depends on which other windows share
  its ONNX call. Dynamic INT8 quantization scales activations over a call's whole input, so
  ``per_window: true`` (the exporter sets it for such graphs) makes the runtime call the
  model one window at a time; ``false``: batch calls; absent or null (bundles exported
  before the key existed): one window at a time if the model holds dynamic quantization ops.
- Alarm: ``prediction >= threshold`` (``alarm_when: above``) or ``<=`` (``below``).
- ``task.interval`` (optional; bundles without it load as before)::

      {"method": "split_conformal", "level": float in (0, 1), "by": "none" | "condition",
       "half_width": [float >= 0] * (n_conditions + 1),   # last entry global
       "floor": float | null, "alarm_lead_time": float | null, "calibration_windows": int}

  The device adds ``rul_low = max(prediction - q, floor)`` and ``rul_high = prediction + q``
  with ``q`` the window's condition entry when ``by`` is ``condition`` and the condition is
  known, else the global (last) entry (:mod:`plantml.core.intervals`). With
  ``alarm_lead_time`` (and no ``threshold``) the alarm is ``rul_low <= alarm_lead_time``.
- ``task.asset_threshold`` (optional, anomaly): ``{"windows": K, "quantile": q, "margin": m}``:
  each asset's first ``K`` windows calibrate (no alarm), then the alarm is ``score >= m *
  quantile_q(those scores)`` (:mod:`plantml.core.asset_threshold`); the output gains a
  ``threshold`` column (NaN while calibrating).
- ``task.calibration`` (optional, failure): the temperature / Platt scaling that the
  exporter folded into the ONNX graph; ``prediction`` already is the calibrated
  probability and ``threshold`` is on that scale. Nothing for the device to apply.

:func:`load_bundle` checks all of this before a model runs; :func:`write_manifest`
seals a folder (hashes every file) for the exporter and for tests.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from plantml.core.asset_threshold import check_spec

FORMAT = "plantml-edge-bundle"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
REEXPORT = "re-export it with plantml-export"
# ONNX Runtime ops whose activation scales span the whole batch of a call
DYNAMIC_QUANT_OPS = ("DynamicQuantizeLinear", "DynamicQuantizeLSTM", "DynamicQuantizeMatMul")

_REQUIRED = {
    "": [
        *("format", "format_version", "name", "version", "model", "input"),
        *("normalization", "conditions", "task", "files"),
    ],
    "model": ["file", "input", "output"],
    "input": [
        *("asset_column", "time_column", "time_kind", "sampling_period", "max_gap"),
        *("feature_columns", "window_length", "stride"),
    ],
    "normalization": ["method", "per_condition", "offset", "scale"],
    "conditions": ["mode", "names"],
    "task": ["kind", "output_name"],
}


class BundleError(ValueError):
    """The bundle cannot be used as it is (missing, modified, inconsistent)."""


def sha256_file(path: str | Path) -> str:
    """SHA-256 hex digest of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass(frozen=True, eq=False)
class Bundle:
    """A loaded, verified bundle: its folder and its manifest, with typed accessors.

    ``offset`` and ``scale`` are the normalization statistics as
    (n_conditions + 1, n_features) float64 arrays; the last row is global.
    """

    path: Path
    manifest: dict[str, Any]
    offset: np.ndarray = field(repr=False)
    scale: np.ndarray = field(repr=False)

    @property
    def name(self) -> str:
        return str(self.manifest["name"])

    @property
    def version(self) -> str:
        return str(self.manifest["version"])

    @property
    def model_path(self) -> Path:
        return self.path / self.manifest["model"]["file"]

    @property
    def input(self) -> dict[str, Any]:
        return self.manifest["input"]

    @property
    def conditions(self) -> dict[str, Any]:
        return self.manifest["conditions"]

    @property
    def task(self) -> dict[str, Any]:
        return self.manifest["task"]

    @property
    def asset_column(self) -> str | None:
        """The asset id column, or None: the model was trained without asset ids."""
        return self.input["asset_column"]

    @property
    def time_column(self) -> str:
        return self.input["time_column"]

    @property
    def feature_columns(self) -> list[str]:
        return list(self.input["feature_columns"])

    @property
    def window_length(self) -> int:
        return int(self.input["window_length"])

    @property
    def stride(self) -> int:
        return int(self.input["stride"])

    @property
    def max_gap(self) -> float | None:
        gap = self.input["max_gap"]
        return None if gap is None else float(gap)

    @property
    def window_calls(self) -> bool:
        """Must the model be called one window at a time? (see "One window per call")"""
        mode = self.manifest["model"].get("per_window")
        if mode is not None:
            return bool(mode)
        data = self.model_path.read_bytes()
        return any(op.encode() in data for op in DYNAMIC_QUANT_OPS)

    @property
    def valid_range(self) -> dict[str, Any] | None:
        """``{"bounds": {column: [low, high]}, "action": "nan" | "clip"}`` or None."""
        return self.input.get("valid_range")

    @property
    def output_name(self) -> str:
        return str(self.task["output_name"])

    @property
    def threshold(self) -> float | None:
        thr = self.task.get("threshold")
        return None if thr is None else float(thr)

    @property
    def alarm_when(self) -> str:
        return self.task.get("alarm_when") or "above"

    @property
    def interval(self) -> dict[str, Any] | None:
        """``task.interval`` (conformal RUL intervals), or None."""
        return self.task.get("interval")

    @property
    def required_columns(self) -> list[str]:
        """Input columns every row needs: asset, time, features, condition or settings."""
        cols = [c for c in (self.asset_column, self.time_column) if c]
        cols += self.feature_columns
        mode = self.conditions["mode"]
        if mode == "column":
            cols.append(self.conditions["column"])
        elif mode == "cluster":
            cols.extend(self.conditions["settings"])
        return list(dict.fromkeys(cols))


def _fail(path: Path, problem: str) -> BundleError:
    return BundleError(f"bundle {path}: {problem}")


def _read_manifest(folder: Path) -> dict[str, Any]:
    file = folder / MANIFEST
    if not folder.is_dir():
        raise BundleError(
            f"bundle folder {folder} not found; pass the folder that holds model.onnx and "
            "manifest.json (plantml-export writes it)"
        )
    if not file.is_file():
        raise _fail(folder, f"no {MANIFEST} in the folder; {REEXPORT}")
    try:
        manifest = json.loads(file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise _fail(folder, f"{MANIFEST} is not valid JSON ({exc}); {REEXPORT}") from None
    if not isinstance(manifest, dict):
        raise _fail(folder, f"{MANIFEST} must hold one JSON object; {REEXPORT}")
    return manifest


def _check_keys(folder: Path, manifest: Mapping[str, Any]) -> None:
    if manifest.get("format") != FORMAT:
        raise _fail(
            folder, f"{MANIFEST} has format {manifest.get('format')!r}, expected {FORMAT!r}"
        )
    version = manifest.get("format_version")
    if version != FORMAT_VERSION:
        newer = isinstance(version, int) and version > FORMAT_VERSION
        fix = "upgrade plantml on this device" if newer else REEXPORT
        raise _fail(
            folder,
            f"bundle format_version {version!r} is not supported (this runtime reads "
            f"{FORMAT_VERSION}); {fix}",
        )
    for section, keys in _REQUIRED.items():
        block = manifest if not section else manifest.get(section)
        where = MANIFEST if not section else f"{MANIFEST} section {section!r}"
        if not isinstance(block, Mapping):
            raise _fail(folder, f"{where} is missing or not an object; {REEXPORT}")
        missing = [k for k in keys if k not in block]
        if missing:
            raise _fail(folder, f"{where} lacks the key(s) {missing}; {REEXPORT}")


def _matrix(folder: Path, value: Any, rows: int, cols: int, what: str) -> np.ndarray:
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise _fail(folder, f"{what} is not a table of numbers; {REEXPORT}") from None
    if arr.shape != (rows, cols):
        raise _fail(folder, f"{what} has shape {arr.shape}, expected ({rows}, {cols}); {REEXPORT}")
    if not np.isfinite(arr).all():
        raise _fail(folder, f"{what} holds NaN or infinite values; {REEXPORT}")
    return arr


def _check_valid_range(folder: Path, block: Any, features: list) -> None:
    if block is None:
        return
    if not isinstance(block, Mapping) or not isinstance(block.get("bounds"), Mapping):
        raise _fail(folder, f"input.valid_range must hold a 'bounds' object; {REEXPORT}")
    if block.get("action") not in ("nan", "clip"):
        raise _fail(folder, f"input.valid_range.action {block.get('action')!r} is not nan or clip")
    for col, bound in block["bounds"].items():
        ok = (
            col in features
            and isinstance(bound, list)
            and len(bound) == 2
            and all(v is None or (isinstance(v, int | float) and math.isfinite(v)) for v in bound)
        )
        if ok and None not in bound:
            ok = bound[0] <= bound[1]
        if not ok:
            raise _fail(
                folder,
                f"input.valid_range.bounds.{col} = {bound!r} is not [low, high] of a feature "
                f"column; {REEXPORT}",
            )


def _check_semantics(folder: Path, m: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    inp, cond, task = m["input"], m["conditions"], m["task"]
    features = inp["feature_columns"]
    if inp["asset_column"] is not None and not isinstance(inp["asset_column"], str):
        raise _fail(folder, f"input.asset_column must be a column name or null; {REEXPORT}")
    if not isinstance(features, list) or not features:
        raise _fail(folder, f"input.feature_columns must be a non-empty list; {REEXPORT}")
    if inp["time_kind"] not in ("number", "datetime"):
        raise _fail(folder, f"input.time_kind {inp['time_kind']!r} is not 'number' or 'datetime'")
    for key in ("window_length", "stride"):
        if not isinstance(inp[key], int) or inp[key] < 1:
            raise _fail(folder, f"input.{key} must be an integer >= 1, got {inp[key]!r}")
    gap = inp["max_gap"]
    if gap is not None and not (isinstance(gap, int | float) and math.isfinite(gap) and gap > 0):
        raise _fail(folder, f"input.max_gap must be a positive number or null, got {gap!r}")
    _check_valid_range(folder, inp.get("valid_range"), features)
    if m["model"].get("per_window") not in (None, True, False):
        raise _fail(
            folder, f"model.per_window {m['model']['per_window']!r} is not true, false or null"
        )
    mode, names = cond["mode"], cond["names"]
    if not isinstance(names, list) or not names:
        raise _fail(folder, f"conditions.names must be a non-empty list; {REEXPORT}")
    if mode == "column":
        if not cond.get("column") or len(cond.get("categories") or []) != len(names):
            raise _fail(
                folder,
                "conditions mode 'column' needs a column and one category per name; " + REEXPORT,
            )
    elif mode == "cluster":
        settings = cond.get("settings") or []
        if not settings:
            raise _fail(folder, f"conditions mode 'cluster' needs settings columns; {REEXPORT}")
        k = len(settings)
        _matrix(folder, [cond.get("center")], 1, k, "conditions.center")
        scale = _matrix(folder, [cond.get("scale")], 1, k, "conditions.scale")
        if (scale == 0).any():
            raise _fail(folder, f"conditions.scale holds zeros; {REEXPORT}")
        _matrix(folder, cond.get("centroids"), len(names), k, "conditions.centroids")
    elif mode != "single":
        raise _fail(folder, f"conditions.mode {mode!r} is not single, column or cluster")
    norm = m["normalization"]
    rows, cols = len(names) + 1, len(features)
    offset = _matrix(folder, norm["offset"], rows, cols, "normalization.offset")
    scale = _matrix(folder, norm["scale"], rows, cols, "normalization.scale")
    if (scale == 0).any():
        raise _fail(folder, f"normalization.scale holds zeros; {REEXPORT}")
    profile = m.get("reference_profile")
    if profile is not None and (not isinstance(profile, str) or profile not in m.get("files", {})):
        raise _fail(
            folder, f"reference_profile {profile!r} is not a file listed in 'files'; {REEXPORT}"
        )
    if task.get("threshold") is not None:
        if not isinstance(task["threshold"], int | float):
            raise _fail(folder, f"task.threshold must be a number, got {task['threshold']!r}")
        if task.get("alarm_when", "above") not in ("above", "below", None):
            raise _fail(folder, f"task.alarm_when {task['alarm_when']!r} is not above or below")
    _check_interval(folder, task.get("interval"), len(names))
    if task.get("asset_threshold") is not None:
        try:
            check_spec(task["asset_threshold"])
        except (ValueError, AttributeError) as exc:
            raise _fail(folder, f"task.{exc}; {REEXPORT}") from None
    return offset, scale


def _check_interval(folder: Path, interval: Any, n_conditions: int) -> None:
    """``task.interval`` (optional): its shape and values, as :mod:`plantml.core.intervals` reads it."""
    if interval is None:
        return
    if not isinstance(interval, Mapping):
        raise _fail(folder, f"task.interval must be an object; {REEXPORT}")
    if interval.get("by") not in ("none", "condition"):
        raise _fail(folder, f"task.interval.by {interval.get('by')!r} is not none or condition")
    widths = _matrix(
        folder, [interval.get("half_width")], 1, n_conditions + 1, "task.interval.half_width"
    )
    if (widths < 0).any():
        raise _fail(folder, f"task.interval.half_width holds negative values; {REEXPORT}")
    for key in ("floor", "alarm_lead_time"):
        value = interval.get(key)
        if value is not None and not (isinstance(value, int | float) and math.isfinite(value)):
            raise _fail(folder, f"task.interval.{key} must be a number or null, got {value!r}")


def content_sha256(manifest: Mapping[str, Any]) -> str:
    """SHA-256 of the manifest's content (canonical JSON, without its own hash)."""
    body = {k: v for k, v in manifest.items() if k != "manifest_sha256"}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _check_files(folder: Path, m: Mapping[str, Any], verify: bool) -> None:
    files = m["files"]
    model_file = m["model"]["file"]
    if not isinstance(files, Mapping) or model_file not in files:
        raise _fail(folder, f"{MANIFEST} 'files' does not list {model_file!r}; {REEXPORT}")
    root = folder.resolve()
    for name, expected in files.items():
        rel = PurePosixPath(name)
        path = (folder / rel).resolve()
        if rel.is_absolute() or ".." in rel.parts or not path.is_relative_to(root):
            raise _fail(folder, f"{MANIFEST} lists {name!r}, which is outside the bundle folder")
        if not path.is_file():
            raise _fail(
                folder,
                f"{name} is listed in {MANIFEST} but missing from the folder; copy the whole "
                f"bundle folder again or {REEXPORT}",
            )
        if verify:
            actual = sha256_file(path)
            if actual != str(expected).lower():
                raise _fail(
                    folder,
                    f"{name} has SHA-256 {actual} but {MANIFEST} records {expected}: the bundle "
                    f"was modified or corrupted after export; {REEXPORT} (or copy it again)",
                )
    if verify and m.get("manifest_sha256") != content_sha256(m):
        raise _fail(
            folder,
            f"{MANIFEST} was edited after export (its content no longer matches its "
            f"manifest_sha256); {REEXPORT}",
        )


def validate_manifest(manifest: Mapping[str, Any], folder: str | Path = ".") -> None:
    """Raise :class:`BundleError` when ``manifest`` breaks the format (files not checked)."""
    _check_keys(Path(folder), manifest)
    _check_semantics(Path(folder), manifest)


def load_bundle(path: str | Path, verify: bool = True) -> Bundle:
    """Read and check the bundle in folder ``path`` (or its ``manifest.json``).

    Checks the format and version, the required keys, the shapes of the
    statistics, and (``verify``) the SHA-256 of every listed file.
    """
    folder = Path(path)
    if folder.name == MANIFEST and folder.is_file():
        folder = folder.parent
    manifest = _read_manifest(folder)
    _check_keys(folder, manifest)
    offset, scale = _check_semantics(folder, manifest)
    _check_files(folder, manifest, verify)
    return Bundle(path=folder, manifest=manifest, offset=offset, scale=scale)


def write_manifest(folder: str | Path, manifest: Mapping[str, Any]) -> Path:
    """Seal a bundle folder: hash every file in it into ``files`` and write ``manifest.json``.

    The manifest is validated first; returns the path written.
    """
    folder = Path(folder)
    out = dict(manifest)
    out["files"] = {
        p.relative_to(folder).as_posix(): sha256_file(p)
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.relative_to(folder).as_posix() != MANIFEST
    }
    validate_manifest(out, folder)
    model_file = out["model"]["file"]
    if model_file not in out["files"]:
        raise _fail(folder, f"{model_file} is not in the folder; write the ONNX model first")
    out["manifest_sha256"] = content_sha256(out)
    target = folder / MANIFEST
    target.write_text(json.dumps(out, indent=2) + "\n", encoding="utf-8")
    return target
