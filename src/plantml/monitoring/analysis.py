"""A monitoring run over a time range: chunks, checks, performance, the result of ``report``.

Sources, in any combination: the store (summaries with sketches,
predictions, events), or files (agent summaries as JSON lines, raw input
rows, a predictions log, an events file). Input drift needs sketches (from
summaries or raw rows); output drift and performance need predictions.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from plantml.edge.bundle import Bundle
from plantml.monitoring.errors import MonitoringError
from plantml.monitoring.estimate import calibrate, expected_performance
from plantml.monitoring.ingest import chunk_bounds
from plantml.monitoring.labels import EventLog, PredictionLog, horizon_in_log_units, score
from plantml.monitoring.monitor import Monitor
from plantml.monitoring.profile import ReferenceProfile
from plantml.monitoring.rows import MonitorRows
from plantml.monitoring.rules import Rule
from plantml.monitoring.sketch import ProfileSketch, SketchError

DAY = 86400.0
DEFAULT_ROWS = 1000  # rows (or predictions) per chunk when no chunk length is given


@dataclass
class Sources:
    """What a report reads (None: not available)."""

    summaries: list[dict[str, Any]] | None = None
    rows: MonitorRows | None = None
    predictions: PredictionLog | None = None
    events: EventLog | None = None
    notes: list[str] = field(default_factory=list)


@dataclass
class Chunk:
    start: float
    end: float
    sketch: ProfileSketch
    predictions: np.ndarray  # indices into the prediction log


def codes_of_names(profile: ReferenceProfile, names: np.ndarray) -> np.ndarray:
    lookup = {n: i for i, n in enumerate(profile.conditions)}
    return np.array([lookup.get(str(n), -1) for n in names], dtype=np.int64)


def _close_gaps(chunks: list[Chunk]) -> None:
    """Chunks cover the time line without gaps: each ends where the next starts."""
    for a, b in itertools.pairwise(chunks):
        a.end = b.start


def build_chunks(
    profile: ReferenceProfile,
    src: Sources,
    every: float | None,
    rows: int | None,
) -> list[Chunk]:
    """Chunks in time order, each with the merged sketch of its inputs and its predictions.

    Without ``every`` or ``rows``: one chunk per summary (the agent's period), or
    ``DEFAULT_ROWS`` input rows (or predictions) per chunk.
    """
    chunks: list[Chunk] = []
    default = rows if (rows or every) else DEFAULT_ROWS
    if src.rows is not None and len(src.rows.time):
        for idx in chunk_bounds(src.rows.time, every, default):
            part = src.rows.take(idx)
            sketch = ProfileSketch(profile).update(part.x, part.codes, distance=part.distance)
            chunks.append(
                Chunk(
                    float(np.nanmin(part.time)),
                    float(np.nanmax(part.time)),
                    sketch,
                    np.zeros(0, int),
                )
            )
        _close_gaps(chunks)
    elif src.summaries:
        usable, skipped = [], 0
        for record in src.summaries:
            if not record.get("sketch"):
                continue
            try:
                usable.append(
                    (record["period_end"], ProfileSketch.from_dict(record["sketch"], profile))
                )
            except SketchError:
                skipped += 1
        if skipped:
            src.notes.append(f"{skipped} summaries carry sketches of another bundle; left out")
        if usable:
            times = np.array([t for t, _ in usable], dtype=np.float64)
            for idx in chunk_bounds(times, every, rows if (rows or every) else 1):
                merged = ProfileSketch.merged(profile, (usable[i][1] for i in idx))
                chunks.append(
                    Chunk(
                        float(times[idx].min()), float(times[idx].max()), merged, np.zeros(0, int)
                    )
                )
            _close_gaps(chunks)
    preds = src.predictions
    if preds is not None and len(preds):
        if not chunks:  # only predictions: chunk them by their own times
            for idx in chunk_bounds(preds.time, every, default):
                t = preds.time[idx]
                chunks.append(Chunk(float(t.min()), float(t.max()), ProfileSketch(profile), idx))
            _close_gaps(chunks)
        else:
            edges = np.array([c.start for c in chunks] + [np.inf])
            edges[0] = -np.inf
            which = np.searchsorted(edges, preds.time, side="right") - 1
            for i, c in enumerate(chunks):
                c.predictions = np.flatnonzero(which == i)
        codes = codes_of_names(profile, preds.condition)
        for c in chunks:
            if c.sketch.out_moments.n[-1] == 0 and len(c.predictions):
                alarm = preds.alarm[c.predictions]
                c.sketch.update_outputs(
                    preds.value[c.predictions],
                    codes[c.predictions],
                    None if np.isnan(alarm).all() else alarm,
                )
    return chunks


def estimate_figures(profile: ReferenceProfile, preds: PredictionLog | None, chunk: Chunk) -> dict:
    """Label-free performance estimate of a chunk (failure bundles with a calibrator)."""
    out: dict[str, Any] = {}
    if preds is None or not len(chunk.predictions) or profile.output is None:
        return out
    if profile.output.kind == "failure" and profile.calibrator:
        idx = chunk.predictions
        alarms = preds.alarm[idx]
        if not np.isnan(alarms).all():
            est = expected_performance(
                calibrate(preds.value[idx], profile.calibrator), np.nan_to_num(alarms)
            )
            out.update({f"estimated_{k}": est[k] for k in ("precision", "recall", "f1")})
    return out


def run_checks(
    bundle: Bundle,
    profile: ReferenceProfile,
    rules: list[Rule],
    src: Sources,
    every: float | None = None,
    rows: int | None = None,
    report_path: str | None = None,
    horizon: float | None = None,
    now: float | None = None,
) -> dict[str, Any]:
    """Check every chunk in order and score performance; returns the report's content."""
    chunks = build_chunks(profile, src, every, rows)
    if not chunks:
        raise MonitoringError(
            "nothing to monitor in this range: no sketches (summaries or input rows) and no "
            "predictions; check --since/--until and the sources"
        )
    time_kind = bundle.input["time_kind"]
    task = bundle.task
    kind = task["kind"]
    performance = None
    realized_by_chunk: list[dict] = [{} for _ in chunks]
    if src.predictions is not None and src.events is not None and len(src.predictions):
        if horizon is None and kind == "failure":
            horizon = horizon_in_log_units(task, time_kind)
        edges = np.array([c.start for c in chunks] + [chunks[-1].end + 1e-9])
        edges[-1] = max(edges[-1], float(np.nanmax(src.predictions.time)) + 1e-9)
        performance = score(
            kind,
            src.predictions,
            src.events,
            now=now,
            horizon=horizon,
            rul_cap=task.get("rul_cap"),
            periods=edges,
            day=DAY if time_kind == "datetime" else 1.0,
        )
        for i, row in enumerate(performance.get("over_time", [])):
            realized_by_chunk[i] = {
                k: row.get(k)
                for k in ("precision", "recall", "f1", "rmse")
                if row.get(k) is not None
            }
    monitor = Monitor(profile, rules)
    checks = []
    for c, realized in zip(chunks, realized_by_chunk, strict=True):
        figures = {**estimate_figures(profile, src.predictions, c), **realized}
        result = monitor.check(c.end, c.sketch, figures, report_path, start=c.start)
        result["predictions"] = len(c.predictions)
        checks.append(result)
    out_counts = np.sum([c.sketch.out_counts for c in chunks], axis=0)
    alerts = [a for c in checks for a in c["alerts"]["opened"]]
    resolved = [a for c in checks for a in c["alerts"]["resolved"]]
    return {
        "bundle": {
            "name": bundle.name,
            "version": bundle.version,
            "bundle_sha": bundle.manifest.get("manifest_sha256"),
            "task": kind,
            "time_kind": time_kind,
            "conditions": list(profile.conditions),
            "features": list(profile.features),
        },
        "rules": [r.__dict__ for r in rules],
        "chunks": len(checks),
        "rows": int(sum(c["rows"] for c in checks)),
        "checks": checks,
        "alerts": alerts,
        "resolved": resolved,
        "open_alerts": monitor.book.open_alerts(),
        "performance": performance,
        "output_counts": out_counts.tolist(),
        "notes": src.notes,
        "report": report_path,
    }
