"""A real tiny training run -> plantml-export -> register -> approve -> promote -> signed download."""

from __future__ import annotations

import json

import pytest

from tests.integration.helpers import TINY, run_cli, run_dirs

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore")]
POLICY = """
[stages.canary]
min_hours_in_previous = 0
outcome_required = false
[stages.production]
min_hours_in_previous = 0
outcome_required = true
approvals = 1
"""


def test_train_export_register_approve_promote(tmp_path):
    cwd = tmp_path
    run_cli(
        "plantml-train",
        *TINY,
        "bootstrap=20",
        "model.hidden_size=16",
        "gate=failure_default",
        "gate.rules=[{metric:false_alarms_per_1000,max:1000,scope:every_condition}]",
        cwd=cwd,
    )
    run = run_dirs(cwd, "synthetic_failure")[-1]
    run_cli(
        "plantml-export",
        f"ckpt_path={run / 'checkpoints' / 'best.ckpt'}",
        "export=fp32",
        f"export_dir={cwd / 'export'}",
        "measure.repeats=10",
        "measure.windows=300",
        cwd=cwd,
    )
    bundle = cwd / "export" / "synthetic_failure-fp32" / "bundle"
    home = cwd / "registry"
    env = {"PLANTML_REGISTRY_HOME": str(home)}

    def registry(*args, token=None, ok=True):
        return run_cli(
            "plantml-registry",
            *args,
            cwd=cwd,
            expect_ok=ok,
            env={**env, "PLANTML_REGISTRY_TOKEN": token},
        )

    admin = registry("init", "--admin", "alice").stdout.strip().splitlines()[-1]
    (home / "policy.toml").write_text(POLICY)
    tokens = {}
    for user, roles in (("bob", "developer"), ("carol", "reviewer"), ("olga", "operator")):
        registry("users", "add", user, "--roles", roles, token=admin)
        tokens[user] = (
            registry("tokens", "issue", user, token=admin).stdout.strip().splitlines()[-1]
        )
    registry("targets", "add", "site-a", "--conditions", "high,low,nominal", token=tokens["olga"])
    out = registry(
        "register",
        str(bundle),
        "--model",
        "pump-failure",
        "--tag",
        "site=a",
        "--wandb-link",
        token=tokens["bob"],
    ).stdout
    assert "registered pump-failure:1" in out and "W&B link skipped" not in out  # csv logger
    show = json.loads(registry("show", "pump-failure:1", "--full").stdout)
    record = show["record"]
    assert record["lineage"]["data_fingerprint"] and record["lineage"]["git"] is not None
    assert record["export"]["final_variant"] == "onnx_fp32"
    assert set(record["gate"]["sources"]) == {"bundle", "training"}
    training = record["metrics"]["training"]["by_condition"]
    assert any("ci" in c for split in training.values() for c in split.values())
    refused = registry("approve", "pump-failure:1", token=tokens["bob"], ok=False)
    assert refused.returncode == 3 and "wrong_role" in refused.stderr
    registry("approve", "pump-failure:1", "--comment", "ok", token=tokens["carol"])
    for stage in ("shadow", "canary"):
        registry(
            "promote",
            "pump-failure:1",
            "--target",
            "site-a",
            "--stage",
            stage,
            token=tokens["olga"],
        )
    refused = registry(
        "promote",
        "pump-failure:1",
        "--target",
        "site-a",
        "--stage",
        "production",
        token=tokens["olga"],
        ok=False,
    )
    assert refused.returncode == 3 and "missing_outcome" in refused.stderr
    registry(
        "outcome",
        "pump-failure:1",
        "--target",
        "site-a",
        "--stage",
        "canary",
        "--passed",
        "--evidence",
        '{"false_alarms": 0}',
        token=tokens["olga"],
    )
    registry(
        "promote",
        "pump-failure:1",
        "--target",
        "site-a",
        "--stage",
        "production",
        token=tokens["olga"],
    )
    assigned = json.loads(registry("assignments", "--target", "site-a").stdout)
    assert assigned["pump-failure"]["production"]["version"] == "pump-failure:1"
    assert "audit chain OK" in registry("audit", "verify").stdout
    assert "## Evaluation per operating condition" in registry("card", "pump-failure:1").stdout
    registry("pull", "pump-failure:1", "--out", str(cwd / "device"))
    edge = run_cli(
        "plantml-edge",
        "verify",
        "--bundle",
        str(cwd / "device"),
        "--trusted-keys",
        str(home / "keys" / "trusted"),
        cwd=cwd,
    )
    assert "signature verified" in edge.stdout
