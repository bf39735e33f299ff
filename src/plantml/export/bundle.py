"""Seal an exported model into an edge bundle: ``model.onnx`` + ``manifest.json``.

The manifest (format: :mod:`plantml.edge.bundle`) tells a device everything it
needs: the input schema and normalization (:mod:`plantml.export.manifest`),
the operating conditions, what the output means and when it raises an alarm,
the hashes of the files, where the model came from, and how well it did per
condition.
"""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path

from omegaconf import DictConfig

import plantml
from plantml.edge.bundle import FORMAT, FORMAT_VERSION, load_bundle, sha256_file, write_manifest
from plantml.export.manifest import input_manifest
from plantml.monitoring.profile import FILE_NAME as PROFILE_FILE


def task_manifest(
    kind: str,
    cfg: DictConfig,
    threshold: float | None,
    time_unit: str,
    class_names: list[str] | None = None,
) -> dict:
    """What the prediction means and when it is an alarm."""
    target = cfg.data.get("target", {})
    if kind == "class":
        return {
            "kind": "class",
            "output_name": "fault_class",
            "description": "the most probable class of the window, with its probability",
            "unit": None,
            "classes": list(class_names or []),
            "threshold": None,
            "alarm_when": None,
        }
    if kind == "failure":
        horizon = target.get("horizon")
        return {
            "kind": "failure",
            "output_name": "failure_probability",
            "description": f"probability that the asset fails within the next {horizon} {time_unit}",
            "unit": None,
            "horizon": horizon,
            "horizon_unit": time_unit,
            "threshold": threshold,
            "alarm_when": "above",
        }
    if kind == "rul":
        return {
            "kind": "rul",
            "output_name": "rul",
            "description": f"remaining useful life in {time_unit} at the window's last row",
            "unit": time_unit,
            "rul_cap": target.get("rul_cap"),
            "threshold": threshold,
            "alarm_when": None if threshold is None else "below",
        }
    return {
        "kind": kind,
        "output_name": f"{kind}_score",
        "description": f"{kind} score of the window",
        "unit": None,
        "threshold": threshold,
        "alarm_when": None if threshold is None else "above",
    }


def write_bundle(
    folder: str | Path,
    onnx_path: str | Path,
    *,
    name: str,
    data,
    cfg: DictConfig,
    kind: str,
    threshold: float | None,
    model_info: dict,
    metrics: dict,
    lineage: dict,
    stride: int = 1,
    profile=None,
    task_extra: dict | None = None,
) -> Path:
    """Write and verify a bundle folder; returns it. ``data`` is the run's PreparedData.

    ``profile`` (a :class:`plantml.monitoring.profile.ReferenceProfile`) is written as
    ``reference_profile.json`` and named by the manifest key ``reference_profile``;
    ``task_extra`` joins the manifest's ``task`` block (``interval``, ``calibration``).
    """
    folder = Path(folder)
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    shutil.copyfile(onnx_path, folder / "model.onnx")
    if profile is not None:
        profile.save(folder / PROFILE_FILE)
    timestamps = str(data.frame[data.table.time_column].dtype).startswith("datetime")
    time_unit = data.table.time_unit if timestamps else "cycles"
    created = datetime.now(UTC)
    digest = sha256_file(folder / "model.onnx")[:12]
    manifest = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "name": name,
        "version": f"{created:%Y%m%d.%H%M%S}-{digest}",
        "created": created.isoformat(timespec="seconds"),
        "plantml_version": plantml.__version__,
        "model": {"file": "model.onnx", "input": "window", "output": "prediction", **model_info},
        **input_manifest(data, cfg.data.get("cleaning"), stride),
        "task": {
            **task_manifest(kind, cfg, threshold, time_unit, getattr(data, "class_names", None)),
            **(task_extra or {}),
        },
        "lineage": lineage,
        "metrics": metrics,
    }
    if profile is not None:
        manifest["reference_profile"] = PROFILE_FILE
    write_manifest(folder, manifest)
    load_bundle(folder)  # what a device will do: read it back and check every hash
    return folder


def write_sample_rows(
    bundle: str | Path, data, split: str, path: str | Path, assets: int = 2, rows: int = 600
) -> Path:
    """A CSV of rows as the device receives them, to try the bundle on real input.

    The last ``rows`` cleaned rows of up to ``assets`` assets of ``split`` (the run's
    scored split), in the bundle's input columns, timestamps as ISO-8601:
    ``plantml-edge predict --bundle BUNDLE --input sample_rows.csv`` works as it is.
    """
    import numpy as np

    manifest = load_bundle(bundle).manifest
    table, frame = data.table, data.frame
    index = data.windows[split]
    codes = list(dict.fromkeys(np.asarray(index.assets).tolist()))[:assets]
    names = {str(data.asset_names[c]) for c in codes}
    chosen = frame[frame[table.asset_column].astype(str).isin(names)]
    chosen = chosen.groupby(table.asset_column, sort=False).tail(rows)
    inp, cond = manifest["input"], manifest["conditions"]
    columns = [c for c in (inp["asset_column"], inp["time_column"]) if c]
    columns += inp["feature_columns"]
    columns += [cond["column"]] if cond["mode"] == "column" else cond.get("settings") or []
    out = chosen[list(dict.fromkeys(columns))].copy()
    time = inp["time_column"]
    if str(out[time].dtype).startswith("datetime"):
        out[time] = out[time].dt.strftime("%Y-%m-%dT%H:%M:%S")
    path = Path(path)
    out.to_csv(path, index=False)
    return path
