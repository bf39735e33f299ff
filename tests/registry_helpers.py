"""A registry with users, and exports that look like plantml-export's, built in milliseconds.

:func:`make_export` writes what registration reads: ``export/<name>/bundle/`` (a real,
hash-sealed bundle from :func:`tests.bundles.make_bundle`), ``export_report.json`` beside it,
and the training run folder its lineage points at (``metrics.json`` with per-condition
intervals and a gate verdict, ``config.yaml`` with the gate rules, ``lineage.json``).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import yaml

from plantml.registry import Registry
from plantml.registry.policy import parse_policy
from tests.bundles import make_bundle

CONDITIONS = ["high", "low", "nominal"]
GATE = {"rules": [{"metric": "recall", "min": 0.8, "scope": "every_condition"}], "min_samples": 30}
FAST_POLICY = {  # no waiting periods: tests that need them move the clock instead
    "stages": {
        "shadow": {"gate": True},
        "canary": {"min_hours_in_previous": 24, "outcome_required": True},
        "production": {"min_hours_in_previous": 48, "outcome_required": True, "approvals": 2},
    }
}


def _condition(recall: float, n: int = 200, assets: int = 3) -> dict:
    return {
        "recall": recall,
        "precision": 0.7,
        "f1": 0.75,
        "auroc": 0.95,
        "false_alarms_per_1000": 9.0,
        "n": n,
        "assets": assets,
        "ci": {"recall": [recall - 0.05, min(1.0, recall + 0.04)], "f1": [0.7, 0.8]},
    }


def make_export(
    root: Path,
    name: str = "pump",
    seed: int = 0,
    recall: dict[str, float] | None = None,
    gate: dict | None = GATE,
    wandb: bool = False,
) -> Path:
    """A bundle folder with its export report and training run; returns the bundle folder."""
    recall = recall or dict.fromkeys(CONDITIONS, 0.9)
    run = root / "outputs" / name / "runs" / f"2026-01-0{seed % 9 + 1}_00-00-00"
    (run / "checkpoints").mkdir(parents=True)
    ckpt = run / "checkpoints" / "best.ckpt"
    ckpt.write_bytes(b"checkpoint %d" % seed)
    by_condition = {c: _condition(r) for c, r in recall.items()}
    overall = {"recall": min(recall.values()), "f1": 0.75, "precision": 0.7, "n": 600, "assets": 9}
    metrics = {f"test/{k}": v for k, v in overall.items()}
    metrics |= {
        "by_condition": {"test": by_condition},
        "intervals": {"test": {"recall": [overall["recall"] - 0.05, overall["recall"] + 0.03]}},
        "coverage": {"test": {c: {"train_windows": 500, "train_share": 0.33} for c in recall}},
        "worst_condition": {
            "test": {
                "metric": "f1",
                "condition": "low",
                "value": 0.7,
                "overall": 0.75,
                "gap": -0.05,
                "n": 200,
            }
        },
    }
    (run / "metrics.json").write_text(json.dumps(metrics))
    lineage = {
        "data_fingerprint": f"fp-{seed}",
        "git": {"commit": "abc123", "dirty": False},
        "packages": {"plantml": "0.1.0"},
        "seed": seed,
        "data": {"assets": 12, "rows": 9000, "conditions": CONDITIONS, "train_windows": 4000},
    }
    (run / "lineage.json").write_text(json.dumps(lineage))
    logger = {"wandb": {"project": "plantml", "name": name}} if wandb else {"csv": {}}
    config = {"run_name": name, "seed": seed, "logger": logger, "data": {"_target_": "synthetic"}}
    if gate is not None:
        config["gate"] = gate
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    if wandb:
        (run / "wandb" / f"offline-run-20260101_000000-run{seed}abc").mkdir(parents=True)
    (run / "report.md").write_text(f"# {name}: results\n")
    out = root / "export" / f"{name}-int8"
    bundle = make_bundle(
        out / "bundle",
        seed=seed,
        name=f"{name}-int8",
        conditions={
            "mode": "column",
            "column": "regime",
            "names": list(recall),
            "categories": list(recall),
        },
        metrics={"split": "test", "overall": overall, "by_condition": by_condition},
        lineage={
            "checkpoint": str(ckpt),
            "checkpoint_sha256": "0" * 64,
            "training_run": name,
            "recipe": "int8",
            "model_config": {"hidden_size": 32},
            "training": lineage,
        },
        threshold=0.5,
    )
    variant = {
        "format": "onnx",
        "bytes": 20_000,
        "parameters": 5000,
        "nonzero_parameters": 5000,
        "latency": {"p50_ms": 0.1, "p99_ms": 0.2},
        "throughput": 9000.0,
        "metrics": {"overall": {"f1": 0.75}},
        "parity": {"max_abs": 1e-6},
    }
    report = {
        "name": f"{name}-int8",
        "recipe": "int8",
        "split": "test",
        "headline_metric": "f1",
        "final_variant": "onnx_int8",
        "scored_windows": 600,
        "threads": 1,
        "size_ratio_vs_onnx_fp32": 0.3,
        "latency_speedup_vs_torch": 5.0,
        "variants": [
            {**variant, "name": "onnx_fp32"},
            {**variant, "name": "onnx_int8", "bytes": 6000},
        ],
        "notes": [],
    }
    (out / "export_report.json").write_text(json.dumps(report))
    return bundle


class Clock:
    """A settable UTC clock for the registry (``advance(hours=...)``)."""

    def __init__(self, start: datetime | None = None):
        self.now = start or datetime(2026, 5, 1, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **kwargs) -> None:
        self.now += timedelta(**kwargs)


def make_registry(home: Path, url: str | None = None, clock=None, policy: dict | None = None):
    """An initialized registry with users; returns (registry, {user: token})."""
    pol = parse_policy(policy if policy is not None else FAST_POLICY, "test policy")
    kwargs = {"policy": pol} | ({"clock": clock} if clock else {})
    reg, admin = Registry.init("admin", home=home, url=url, token_days=90, **kwargs)
    tokens = {"admin": admin}
    for user, roles in [
        ("dev", "developer"),
        ("dev2", "developer"),
        ("rev1", "reviewer"),
        ("rev2", "reviewer"),
        ("ops", "operator"),
        ("dev_rev", "developer reviewer"),
        ("edge", "device"),
    ]:
        reg.add_user(admin, user, roles)
        tokens[user] = reg.issue_token(admin, user, days=30)
    reg.add_target(tokens["ops"], "site-a", ["high", "nominal"])
    return reg, tokens
