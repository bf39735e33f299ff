"""What registration reads: the bundle, its export report, and the training run behind it.

``plantml-export`` writes ``export/<name>/bundle/`` and ``export/<name>/export_report.json``;
the manifest's lineage names the checkpoint, whose run folder holds ``metrics.json``,
``config.yaml``, ``lineage.json`` and ``report.md``. Everything reachable is gathered into one
JSON record (:func:`read_registration`); what is not reachable is noted, never invented.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from plantml.edge.bundle import MANIFEST, Bundle, BundleError, content_sha256, load_bundle
from plantml.registry.errors import Refused, RegistryError
from plantml.registry.gating import evaluate_gate, metrics_layout
from plantml.registry.wandb_link import wandb_info

MAX_REPORT_CHARS = 200_000
TRAINING_KEYS = ("by_condition", "intervals", "worst_condition", "coverage", "gate")


@dataclass
class Intake:
    """A bundle ready to be recorded: its files by name and the version record."""

    bundle: Bundle
    manifest_sha256: str
    files: dict[str, Path]
    record: dict[str, Any]
    notes: list[str] = field(default_factory=list)


def _json(path: Path, what: str) -> dict:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise RegistryError(f"{what} {path} cannot be read ({exc}); export again") from None
    if not isinstance(value, dict):
        raise RegistryError(f"{what} {path} must hold one JSON object")
    return value


def find_run_dir(bundle: Bundle, run_dir: str | Path | None) -> Path | None:
    """The training run folder: ``run_dir``, else the checkpoint's run folder when it exists."""
    if run_dir is not None:
        path = Path(run_dir)
        if not (path / "metrics.json").is_file():
            raise RegistryError(f"--run {path} has no metrics.json; pass the training run folder")
        return path
    ckpt = (bundle.manifest.get("lineage") or {}).get("checkpoint")
    if not ckpt:
        return None
    for base in (Path.cwd(), bundle.path.parent.parent, bundle.path.parent.parent.parent):
        folder = (base / ckpt).parent.parent
        if (folder / "metrics.json").is_file():
            return folder.resolve()
    return None


def _bundle_summary(bundle: Bundle, digest: str) -> dict[str, Any]:
    m = bundle.manifest
    return {
        "name": bundle.name,
        "version": bundle.version,
        "created": m.get("created"),
        "plantml_version": m.get("plantml_version"),
        "manifest_sha256": digest,
        "model": m["model"],
        "task": m["task"],
        "input": {k: v for k, v in m["input"].items() if k != "dtypes"},
        "conditions": {"mode": m["conditions"]["mode"], "names": list(m["conditions"]["names"])},
    }


def _export_summary(report: dict) -> dict[str, Any]:
    metric = report.get("headline_metric")
    variants = []
    for v in report.get("variants", []):
        variants.append(
            {
                "name": v.get("name"),
                "format": v.get("format"),
                "bytes": v.get("bytes"),
                "parameters": v.get("parameters"),
                "nonzero_parameters": v.get("nonzero_parameters"),
                "p50_ms": (v.get("latency") or {}).get("p50_ms"),
                "p99_ms": (v.get("latency") or {}).get("p99_ms"),
                "throughput": v.get("throughput"),
                "metric": metric,
                "value": ((v.get("metrics") or {}).get("overall") or {}).get(metric),
                "max_abs_diff_vs_torch": (v.get("parity") or {}).get("max_abs"),
            }
        )
    keys = ("recipe", "final_variant", "split", "scored_windows", "threads", "headline_metric")
    return {
        **{k: report.get(k) for k in keys},
        "size_ratio_vs_onnx_fp32": report.get("size_ratio_vs_onnx_fp32"),
        "latency_speedup_vs_torch": report.get("latency_speedup_vs_torch"),
        "variants": variants,
        "notes": list(report.get("notes", [])),
    }


def _training(run: Path, notes: list[str]) -> tuple[dict | None, dict | None, dict | None, str]:
    """(metrics, config, lineage, report.md) of the run folder."""
    metrics = _json(run / "metrics.json", "run metrics")
    config = None
    if (run / "config.yaml").is_file():
        try:
            config = yaml.safe_load((run / "config.yaml").read_text(encoding="utf-8"))
        except yaml.YAMLError as exc:
            notes.append(f"config.yaml of the run could not be read: {exc}")
    else:
        notes.append(f"no config.yaml in the run folder {run}")
    lineage = (
        _json(run / "lineage.json", "run lineage") if (run / "lineage.json").is_file() else None
    )
    report = ""
    if (run / "report.md").is_file():
        report = (run / "report.md").read_text(encoding="utf-8")[:MAX_REPORT_CHARS]
    return metrics, config, lineage, report


def _gate_split(metrics: dict) -> str | None:
    gate = metrics.get("gate") or {}
    if gate.get("split"):
        return gate["split"]
    splits = list(metrics.get("by_condition") or {})
    return "test" if "test" in splits else (splits[0] if splits else None)


def read_registration(
    bundle_dir: str | Path,
    export_report: str | Path | None = None,
    run_dir: str | Path | None = None,
) -> Intake:
    """Read and check everything registration records; a bundle that fails its hashes is refused."""
    try:
        bundle = load_bundle(bundle_dir, verify=True)
    except BundleError as exc:
        tampered = "modified or corrupted" in str(exc) or "edited after export" in str(exc)
        if not tampered:
            raise RegistryError(f"cannot register: {exc}") from None
        raise Refused("tampered_bundle", f"bundle refused: {exc}") from None
    digest = content_sha256(bundle.manifest)
    files = {MANIFEST: bundle.path / MANIFEST}
    files.update({name: bundle.path / name for name in bundle.manifest["files"]})
    notes: list[str] = []
    report_path = (
        Path(export_report) if export_report else bundle.path.parent / "export_report.json"
    )
    export = None
    if report_path.is_file():
        export = _export_summary(_json(report_path, "export report"))
    elif export_report:
        raise RegistryError(f"export report {report_path} not found")
    else:
        notes.append(f"no export report beside the bundle ({report_path}); variants not recorded")
    run = find_run_dir(bundle, run_dir)
    metrics = config = lineage = None
    report_md = ""
    if run is None:
        notes.append(
            "the training run folder was not found (pass --run): metrics with intervals and the run config are not recorded"
        )
    else:
        metrics, config, lineage, report_md = _training(run, notes)
    manifest_lineage = dict(bundle.manifest.get("lineage") or {})
    training_lineage = manifest_lineage.get("training") or lineage or {}
    bundle_metrics = dict(bundle.manifest.get("metrics") or {})
    sources: dict[str, tuple[str, dict]] = {}
    if isinstance(bundle_metrics.get("overall"), dict):
        split = str(bundle_metrics.get("split") or "val")
        sources["bundle"] = (
            split,
            metrics_layout(
                split, bundle_metrics["overall"], bundle_metrics.get("by_condition") or {}
            ),
        )
    if metrics and _gate_split(metrics):
        sources["training"] = (_gate_split(metrics), metrics)
    gate_cfg = (config or {}).get("gate")
    gate = evaluate_gate(gate_cfg, sources) if gate_cfg else None
    if gate_cfg is None:
        notes.append(
            "the run has no gate config (gate=...): promotion that requires the gate is refused"
        )
    record = {
        "bundle": _bundle_summary(bundle, digest),
        "lineage": {
            "data_fingerprint": training_lineage.get("data_fingerprint"),
            "git": training_lineage.get("git"),
            "packages": training_lineage.get("packages"),
            "python": training_lineage.get("python"),
            "seed": training_lineage.get("seed"),
            "data": training_lineage.get("data"),
            "training_run": manifest_lineage.get("training_run"),
            "checkpoint": manifest_lineage.get("checkpoint"),
            "checkpoint_sha256": manifest_lineage.get("checkpoint_sha256"),
            "recipe": manifest_lineage.get("recipe"),
            "model_config": manifest_lineage.get("model_config"),
            "run_dir": str(run) if run else None,
        },
        "config": config,
        "metrics": {
            "bundle": bundle_metrics,
            "training": None
            if metrics is None
            else {
                "overall": {
                    k: v for k, v in metrics.items() if "/" in k and not isinstance(v, dict)
                },
                **{k: metrics[k] for k in TRAINING_KEYS if k in metrics},
            },
        },
        "gate": gate,
        "export": export,
        "wandb": wandb_info(config, run),
        "training_report_md": report_md,
        "notes": notes,
    }
    return Intake(bundle, digest, files, record, notes)
