"""plantml-train → plantml-eval → resume, through the installed entry points."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import torch
import yaml

from tests.integration.helpers import TINY, TINY_RUN, metrics, run_cli, run_dirs

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def trained(tiny_run, tmp_path_factory):
    """The shared tiny run, and a folder of this module's own for what the tests write."""
    return tmp_path_factory.mktemp("train"), tiny_run.run, tiny_run.proc


def test_train_writes_the_run_folder(trained):
    _, run, proc = trained
    for name in (
        "config.yaml",
        "metrics.json",
        "lineage.json",
        "checkpoints/best.ckpt",
        "checkpoints/last.ckpt",
    ):
        assert (run / name).is_file(), name
    m = metrics(run)
    for key in ("val/f1", "val/auprc", "val/recall", "test/f1", "test/auroc"):
        assert key in m
    assert 0.0 <= m["val/auprc"] <= 1.0
    assert set(m["by_condition"]["val"]) == {"high", "low", "nominal"}
    assert sum(c["n"] for c in m["by_condition"]["val"].values()) == m["val/n"]
    config = yaml.safe_load((run / "config.yaml").read_text())
    assert (
        config["seed"] == 3 and config["trainer"]["max_epochs"] == 2
    )  # resolved, overrides applied
    assert "${" not in (run / "config.yaml").read_text()
    lineage = json.loads((run / "lineage.json").read_text())
    assert lineage["seed"] == 3 and len(lineage["data_fingerprint"]) == 64
    assert lineage["packages"]["torch"].startswith("2.11")
    assert "cleaning" in lineage and lineage["cleaning"]["dedupe"]["rows_removed"] > 0
    assert "F1" in proc.stdout and "by operating condition" in proc.stdout
    predictions = pd.read_csv(run / "predictions_val.csv")
    assert list(predictions.columns) == [
        "asset",
        "time",
        "condition",
        "target",
        "prediction",
        "alarm",
    ]
    assert (
        len(predictions) == m["val/n"] and predictions["alarm"].sum() == m["val/tp"] + m["val/fp"]
    )
    # hourly windows: an asset-day is 24 scored windows
    assert m["val/false_alarms_per_asset_day"] == pytest.approx(24 * m["val/fp"] / m["val/n"])
    for png in (
        "by_condition.png",
        "precision_recall_val.png",
        "precision_recall_test.png",
        "confusion_test.png",
    ):
        assert (run / png).read_bytes()[:4] == b"\x89PNG"


def test_eval_reuses_the_run_config_with_overrides(trained):
    cwd, run, _ = trained
    proc = run_cli(
        "plantml-eval", f"ckpt_path={run / 'checkpoints/best.ckpt'}", "data.split=test", cwd=cwd
    )
    (ev,) = run_dirs(cwd, "eval")
    m = metrics(ev)
    train_m = metrics(run)
    # same checkpoint, same held-out assets, same threshold: same numbers as at the end of training
    assert m["test/n"] == train_m["test/n"]
    assert m["test/auprc"] == pytest.approx(train_m["test/auprc"], abs=1e-6)
    assert m["test/threshold"] == pytest.approx(train_m["val/threshold"], abs=1e-6)
    assert "test" in proc.stdout


def test_eval_bad_inputs(trained):
    cwd, run, _ = trained
    proc = run_cli("plantml-eval", "ckpt_path=nowhere/best.ckpt", cwd=cwd, expect_ok=False)
    assert proc.returncode == 2 and "not found" in proc.stderr
    proc = run_cli(
        "plantml-eval",
        f"ckpt_path={run / 'checkpoints/best.ckpt'}",
        "data.split=holdout",
        cwd=cwd,
        expect_ok=False,
    )
    assert proc.returncode == 2 and "unknown split 'holdout'" in proc.stderr


def test_resume_from_last_checkpoint(trained):
    cwd, run, _ = trained
    last = run / "checkpoints/last.ckpt"
    assert torch.load(last, weights_only=False)["epoch"] == 1
    run_cli("plantml-train", *TINY_RUN, "trainer.max_epochs=3", f"ckpt_path={last}", cwd=cwd)
    (resumed,) = run_dirs(cwd, "synthetic_failure")
    ckpt = torch.load(resumed / "checkpoints/last.ckpt", weights_only=False)
    assert ckpt["epoch"] == 2  # one more epoch, not three
    assert metrics(resumed)["epochs"] == 3


def test_report_intervals_worst_condition_and_coverage(trained):
    _, run, _ = trained
    m = metrics(run)
    for split in ("val", "test"):
        lo, hi = m["intervals"][split]["recall"]
        assert lo <= m[f"{split}/recall"] <= hi
        assert m["worst_condition"][split]["metric"] == "f1"
        assert set(m["coverage"][split]) == set(m["by_condition"][split])
        for cond in m["by_condition"][split].values():
            assert cond["assets"] >= 1 and "ci" in cond
    report = (run / "report.md").read_text()
    assert "95 % intervals from resampling assets" in report and "Worst condition by f1" in report


def test_gate_fails_with_exit_code_and_reasons(trained):
    cwd, run, _ = trained
    ckpt = f"ckpt_path={run / 'checkpoints/best.ckpt'}"
    strict = run_cli(
        "plantml-eval",
        ckpt,
        "data.split=test",
        "gate=failure_default",
        "gate.rules=[{metric: recall, min: 1.01, scope: every_condition}]",
        cwd=cwd,
        expect_ok=False,
    )
    assert strict.returncode == 1
    assert (
        "Gate FAILED on 'test'" in strict.stderr
        and "FAIL recall >= 1.01 in condition" in strict.stderr
    )
    lenient = run_cli(
        "plantml-eval",
        ckpt,
        "data.split=test",
        "gate=failure_default",
        "gate.rules=[{metric: recall, min: 0.0, scope: every_condition}]",
        cwd=cwd,
    )
    gate = metrics(run_dirs(cwd, "eval")[-1])["gate"]
    assert gate["passed"] and {c["status"] for c in gate["checks"]} == {"pass"}
    assert lenient.returncode == 0
    # too few windows everywhere: nothing can be assessed, which is never a pass
    none = run_cli(
        "plantml-eval",
        ckpt,
        "data.split=test",
        "gate=failure_default",
        "gate.min_samples=1000000",
        cwd=cwd,
        expect_ok=False,
    )
    assert none.returncode == 1 and "NOT ASSESSABLE" in none.stderr


def test_condition_left_out_of_training_is_flagged(tmp_path):
    run_cli(
        "plantml-train",
        *TINY,
        "trainer.max_epochs=1",
        "data.conditions.exclude_from_training=[high]",
        cwd=tmp_path,
    )
    (run,) = run_dirs(tmp_path, "synthetic_failure")
    m = metrics(run)
    assert "high" not in m["by_condition"]["val"]  # kept out of validation too
    coverage = m["coverage"]["test"]["high"]
    assert coverage["train_windows"] == 0 and "never saw it" in coverage["warning"]
    assert m["by_condition"]["test"]["high"]["n"] > 0
