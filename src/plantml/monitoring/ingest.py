"""From agents and files into the store: MQTT messages, prediction logs, events, raw rows.

Agent messages (JSON, see the README section "Edge agent"):

- ``plant/{site}/{asset}/prediction``: ``{"id", "site", "asset", "time", "model":
  {"name", "version", "bundle_sha256"}, "value", "alarm", "condition", ...}``
- ``plant/{site}/{asset}/alarm``: ``{"id", "asset", "time", "event": "raised"|"cleared", ...}``,
  stored as events of kind ``alarm_raised`` / ``alarm_cleared``
- ``plant/{site}/_agent/summary``: ``{"id", "agent", "model": {...}, "period": {"start",
  "end"}, "counts": {"rows"}, "sketches": {"kind": "plantml-drift", "sketch": {...}}}``

Times become floats: numbers stay as they are (cycles), ISO-8601 text becomes
POSIX seconds (naive = UTC, as in training).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable, Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from plantml.edge.bundle import Bundle
from plantml.edge.io import read_table
from plantml.monitoring.errors import InputFileError
from plantml.monitoring.labels import EVENT_KINDS
from plantml.monitoring.profile import ReferenceProfile
from plantml.monitoring.rows import monitor_rows
from plantml.monitoring.sketch import ProfileSketch

TOPICS = ("plant/+/+/prediction", "plant/+/+/alarm", "plant/+/_agent/summary")


def record_id(*parts: Any) -> str:
    """A stable id of what a file row describes, so that ingesting a file twice stores it once."""
    text = "\x1f".join(str(p) for p in parts)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


def to_time(value: Any) -> float | None:
    """A time as a float: a number as is, ISO-8601 text as POSIX seconds; None if neither."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value) if math.isfinite(value) else None
    text = str(value).strip()
    try:
        number = float(text)
        return number if math.isfinite(number) else None
    except ValueError:
        pass
    try:
        stamp = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=UTC)
    return stamp.timestamp()


def _model(payload: Mapping[str, Any]) -> dict[str, Any]:
    model = payload.get("model")
    if isinstance(model, Mapping):
        return {
            "model": model.get("name"),
            "version": model.get("version"),
            "bundle_sha": model.get("bundle_sha256"),
        }
    return {
        "model": model,
        "version": payload.get("version"),
        "bundle_sha": payload.get("bundle_sha256"),
    }


def _topic_parts(topic: str) -> tuple[str | None, str | None, str | None]:
    parts = topic.split("/")
    if len(parts) >= 4:
        return parts[1], parts[2], parts[3]
    return None, None, parts[-1] if parts else None


def parse_message(topic: str, body: bytes | str) -> tuple[str, dict[str, Any]]:
    """One MQTT message -> (``prediction`` | ``event`` | ``summary``, record for the store).

    Raises :class:`InputFileError` naming what is wrong with the message.
    """
    try:
        payload = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputFileError(f"{topic}: payload is not JSON ({exc})") from None
    if not isinstance(payload, Mapping):
        raise InputFileError(f"{topic}: payload must be a JSON object")
    site, asset, kind = _topic_parts(topic)
    site = payload.get("site", site)
    if kind == "summary":
        return "summary", summary_record(payload, site)
    asset = str(payload.get("asset", asset))
    t = to_time(payload.get("time"))
    if t is None:
        raise InputFileError(f"{topic}: 'time' {payload.get('time')!r} is not a number or ISO time")
    if kind == "alarm":
        event = payload.get("event") or ("raised" if payload.get("active") else "cleared")
        return "event", {
            "msg_id": payload.get("id"),
            "site": site,
            "asset": asset,
            "time": t,
            "kind": f"alarm_{event}",
            "note": json.dumps(payload.get("evidence"), default=str)[:2000],
            "source": payload.get("agent"),
        }
    if kind != "prediction":
        raise InputFileError(f"{topic}: not a prediction, alarm or summary topic")
    value = payload.get("value")
    alarm = payload.get("alarm")
    return "prediction", {
        "msg_id": payload.get("id"),
        "site": site,
        "asset": asset,
        "time": t,
        "time_text": str(payload.get("time"))[:64],
        "condition": payload.get("condition"),
        "value": None if value is None else float(value),
        "alarm": None if alarm is None else int(bool(alarm)),
        **_model(payload),
    }


def summary_record(payload: Mapping[str, Any], site: str | None = None) -> dict[str, Any]:
    """An agent summary as a store record; its drift sketch (if any) kept as is."""
    period = payload.get("period") or {}
    end = to_time(period.get("end"))
    if end is None:
        raise InputFileError("summary without period.end; cannot place it in time")
    sketches = payload.get("sketches") or {}
    sketch = sketches.get("sketch") if isinstance(sketches, Mapping) else None
    counts = payload.get("counts") or {}
    return {
        "msg_id": payload.get("id"),
        "site": payload.get("site", site),
        "agent": payload.get("agent"),
        **_model(payload),
        "profile_sha": sketch.get("profile_sha256") if isinstance(sketch, Mapping) else None,
        "period_start": to_time(period.get("start")),
        "period_end": end,
        "rows": counts.get("rows"),
        "sketch": sketch,
        "body": {k: v for k, v in payload.items() if k != "sketches"},
    }


# --- files -----------------------------------------------------------------------------------


def bundle_info(bundle: Bundle) -> dict[str, Any]:
    return {
        "model": bundle.name,
        "version": bundle.version,
        "bundle_sha": bundle.manifest.get("manifest_sha256"),
    }


def prediction_records(path: str | Path, bundle: Bundle, site: str | None = None) -> list[dict]:
    """A ``plantml-edge predict`` output (or the same columns from elsewhere) as store records."""
    cols = read_table(path)
    output = bundle.output_name
    needed = ["asset", "time", output]
    missing = [c for c in needed if c not in cols]
    if missing:
        raise InputFileError(
            f"{path}: lacks the column(s) {missing}; a predictions file has asset, time, "
            f"condition, {output} and (with a threshold) alarm, as plantml-edge predict writes"
        )
    info = bundle_info(bundle)
    classes = {str(c): float(i) for i, c in enumerate(bundle.task.get("classes") or [])}
    out = []
    for i, (asset, t) in enumerate(zip(cols["asset"], cols["time"], strict=True)):
        tf = to_time(t)
        if tf is None:
            raise InputFileError(f"{path} row {i + 1}: time {t!r} is not a number or ISO time")
        value = cols[output][i]
        if classes:  # a class bundle predicts names: keep the class index
            if str(value) not in classes:
                raise InputFileError(
                    f"{path} row {i + 1}: class {value!r} is not one of the bundle's "
                    f"{', '.join(classes)}"
                )
            value = classes[str(value)]
        alarm = cols["alarm"][i] if "alarm" in cols else None
        out.append(
            {
                "msg_id": record_id("prediction", info["bundle_sha"], asset, tf),
                "site": site,
                "asset": str(asset),
                "time": tf,
                "time_text": str(t)[:64],
                "condition": cols["condition"][i] if "condition" in cols else None,
                "value": None if value in ("", None) else float(value),
                "alarm": None if alarm in ("", None) else int(float(alarm)),
                **info,
            }
        )
    return out


def event_records(path: str | Path, site: str | None = None) -> list[dict]:
    """An events file (CSV or Parquet: asset, time, kind[, end_time, note]) as store records."""
    cols = read_table(path)
    missing = [c for c in ("asset", "time", "kind") if c not in cols]
    if missing:
        raise InputFileError(
            f"{path}: lacks the column(s) {missing}; an events file has asset, time, kind "
            f"({', '.join(EVENT_KINDS)}) and optionally end_time and note"
        )
    out = []
    for i in range(len(cols["asset"])):
        kind = str(cols["kind"][i]).strip().lower()
        if kind not in EVENT_KINDS:
            raise InputFileError(
                f"{path} row {i + 1}: event kind {cols['kind'][i]!r} is not one of "
                f"{', '.join(EVENT_KINDS)}"
            )
        t = to_time(cols["time"][i])
        if t is None:
            raise InputFileError(f"{path} row {i + 1}: time {cols['time'][i]!r} is not a time")
        end = to_time(cols["end_time"][i]) if "end_time" in cols else None
        out.append(
            {
                "msg_id": record_id("event", cols["asset"][i], t, kind),
                "site": site,
                "asset": str(cols["asset"][i]),
                "time": t,
                "kind": kind,
                "end_time": end,
                "note": str(cols["note"][i]) if "note" in cols and cols["note"][i] else None,
                "source": Path(path).name,
            }
        )
    return out


def summary_file_records(path: str | Path) -> Iterator[dict[str, Any]]:
    """A JSON-lines file of agent summaries (one payload per line) as store records."""
    path = Path(path)
    if not path.is_file():
        raise InputFileError(f"summaries file {path} not found")
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                payload = json.loads(line)
            except json.JSONDecodeError as exc:
                raise InputFileError(f"{path} line {n}: not JSON ({exc})") from None
            yield summary_record(payload)


def chunk_bounds(time: np.ndarray, every: float | None, rows: int | None) -> list[np.ndarray]:
    """Index arrays of chunks of rows sorted by time: every ``every`` time units, or ``rows`` rows."""
    order = np.argsort(time, kind="stable")
    if rows:
        return [order[i : i + rows] for i in range(0, len(order), rows)]
    if not every:
        return [order]
    t = time[order]
    bucket = np.floor((t - t[0]) / every) if len(t) else t
    cuts = np.flatnonzero(np.diff(bucket)) + 1
    return np.split(order, cuts)


def sketch_records(
    path: str | Path,
    bundle: Bundle,
    profile: ReferenceProfile,
    every: float | None = None,
    rows: int | None = None,
    site: str | None = None,
) -> list[dict[str, Any]]:
    """Raw input rows (as fed to the model) sketched per chunk, as summary records."""
    data = monitor_rows(bundle, read_table(path))
    info = bundle_info(bundle)
    out = []
    for idx in chunk_bounds(data.time, every, rows):
        part = data.take(idx)
        sketch = ProfileSketch(profile).update(part.x, part.codes, distance=part.distance)
        t = part.time[np.isfinite(part.time)]
        out.append(
            {
                "msg_id": record_id(
                    "rows", info["bundle_sha"], Path(path).name, len(out), len(idx)
                ),
                "site": site,
                "agent": f"file:{Path(path).name}",
                **info,
                "profile_sha": profile.sha256,
                "period_start": float(t.min()) if len(t) else None,
                "period_end": float(t.max()) if len(t) else float(len(out)),
                "rows": len(idx),
                "sketch": sketch.to_dict(),
                "body": {"source": str(path)},
            }
        )
    return out


def flatten(batches: Iterable[Iterable[dict]]) -> list[dict]:
    return [r for b in batches for r in b]
