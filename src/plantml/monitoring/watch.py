"""``plantml-monitor watch``: check what arrived since the last check, alert, remember.

Each :meth:`Watcher.step` reads the summaries and predictions of the bundle
stored after the watermarks of the previous step (ids, so late data is never
skipped nor read twice), merges their sketches into one chunk, checks it
(:class:`~plantml.monitoring.monitor.Monitor`), writes a report for the check,
stores and sends the alerts opened or resolved, and saves the CUSUM and alert
state with the new watermarks in one place. A restarted watcher resumes where
it stopped.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from plantml.edge.bundle import Bundle
from plantml.monitoring.analysis import Chunk, codes_of_names, estimate_figures
from plantml.monitoring.monitor import Monitor
from plantml.monitoring.profile import ReferenceProfile
from plantml.monitoring.report import write_report
from plantml.monitoring.rules import Rule
from plantml.monitoring.sinks import alert_payload, send_all
from plantml.monitoring.sketch import ProfileSketch, SketchError
from plantml.monitoring.store import Store

log = logging.getLogger("plantml.monitor")


class Watcher:
    """One bundle watched in one store; ``step()`` is one check."""

    def __init__(
        self,
        bundle: Bundle,
        profile: ReferenceProfile,
        rules: list[Rule],
        store: Store,
        sinks: list[tuple[str, Callable]],
        out_dir: Path,
    ):
        self.bundle, self.profile, self.rules = bundle, profile, rules
        self.store, self.sinks, self.out_dir = store, sinks, Path(out_dir)
        self.sha = bundle.manifest.get("manifest_sha256")
        saved = store.load_state(self.sha) or {}
        self.monitor = Monitor(profile, rules, saved.get("state"))
        self.summary_mark = int(saved.get("summary_watermark", 0))
        self.prediction_mark = int(saved.get("prediction_watermark", 0))
        self.checks = int((saved.get("state") or {}).get("checks", 0))
        self.failures: list[str] = []

    def step(self) -> dict[str, Any] | None:
        """Check the new data; None when nothing arrived."""
        summaries = self.store.summary_records(self.sha, after_id=self.summary_mark)
        preds, pred_mark = self.store.prediction_log(self.sha, after_id=self.prediction_mark)
        if not summaries and not len(preds):
            return None
        sketch = ProfileSketch(self.profile)
        times = []
        for record in summaries:
            times.append(record["period_end"])
            if record.get("sketch"):
                try:
                    sketch.merge(ProfileSketch.from_dict(record["sketch"], self.profile))
                except SketchError as exc:
                    log.warning("summary %s left out: %s", record["id"], exc)
        if len(preds):
            times.append(float(np.nanmax(preds.time)))
            if sketch.out_moments.n[-1] == 0:
                alarm = preds.alarm
                sketch.update_outputs(
                    preds.value,
                    codes_of_names(self.profile, preds.condition),
                    None if np.isnan(alarm).all() else alarm,
                )
        self.checks += 1
        folder = self.out_dir / f"check-{self.checks:06d}"
        chunk = Chunk(min(times), max(times), sketch, np.arange(len(preds)))
        figures = estimate_figures(self.profile, preds, chunk)
        report_path = str((folder / "monitor.md").resolve())
        result = self.monitor.check(max(times), sketch, figures, report_path, start=min(times))
        result["predictions"] = len(preds)
        write_report(self._as_report(result, sketch), self.profile, folder)
        opened, resolved = result["alerts"]["opened"], result["alerts"]["resolved"]
        self.store.save_alerts(self.sha, [*opened, *resolved])
        info = {"name": self.bundle.name, "version": self.bundle.version, "bundle_sha256": self.sha}
        kind = self.bundle.input["time_kind"]
        payloads = [alert_payload(a, info, kind) for a in (*opened, *resolved)]
        self.failures += send_all(self.sinks, payloads)
        if summaries:
            self.summary_mark = max(r["id"] for r in summaries)
        self.prediction_mark = max(self.prediction_mark, pred_mark)
        state = {**self.monitor.state(), "checks": self.checks}
        self.store.save_state(self.sha, state, self.summary_mark, self.prediction_mark)
        result["check"] = self.checks
        result["report"] = report_path
        return result

    def _as_report(self, check: dict[str, Any], sketch: ProfileSketch) -> dict[str, Any]:
        """One check shaped as a report (see :func:`plantml.monitoring.analysis.run_checks`)."""
        return {
            "bundle": {
                "name": self.bundle.name,
                "version": self.bundle.version,
                "bundle_sha": self.sha,
                "task": self.bundle.task["kind"],
                "time_kind": self.bundle.input["time_kind"],
                "conditions": list(self.profile.conditions),
                "features": list(self.profile.features),
            },
            "rules": [r.__dict__ for r in self.rules],
            "chunks": 1,
            "rows": check["rows"],
            "checks": [check],
            "alerts": check["alerts"]["opened"],
            "resolved": check["alerts"]["resolved"],
            "open_alerts": check["alerts"]["open"],
            "performance": None,
            "output_counts": sketch.out_counts.tolist(),
            "notes": [],
            "report": check.get("report"),
        }
