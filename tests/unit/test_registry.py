"""The registry's library layer: registration, the promotion rules and every refusal, tokens."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
import sqlalchemy as sa

from plantml.registry import NotFound, Refused, RegistryError
from plantml.registry import schema as s
from plantml.registry.policy import parse_policy
from tests.registry_helpers import Clock, make_export, make_registry


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def reg(tmp_path, clock):
    return make_registry(tmp_path / "home", clock=clock)


def refusal(call, *args, **kwargs) -> Refused:
    with pytest.raises(Refused) as err:
        call(*args, **kwargs)
    return err.value


def to_canary(registry, tokens, clock, ref="pump:1"):
    registry.promote(tokens["ops"], ref, "site-a", "shadow")
    clock.advance(hours=25)
    registry.record_rollout_outcome(tokens["ops"], ref, "site-a", "shadow", True, {"alarms": 0})
    registry.promote(tokens["ops"], ref, "site-a", "canary")


def test_register_records_lineage_metrics_gate_export_and_signs(reg, tmp_path):
    registry, tokens = reg
    bundle = make_export(tmp_path / "a", recall={"high": 0.9, "low": 0.6, "nominal": 0.85})
    result = registry.register(tokens["dev"], bundle, "pump", tags={"site": "a"})
    assert result["ref"] == "pump:1" and result["notes"] == []
    v = registry.version("pump:1")
    rec = v["record"]
    assert v["author"] == "dev" and v["tags"] == {"site": "a"} and v["parent"] is None
    assert rec["lineage"]["data_fingerprint"] == "fp-0"
    assert rec["lineage"]["git"]["commit"] == "abc123"
    assert rec["metrics"]["training"]["by_condition"]["test"]["low"]["ci"][
        "recall"
    ] == pytest.approx([0.55, 0.64])
    assert rec["export"]["final_variant"] == "onnx_int8" and len(rec["export"]["variants"]) == 2
    verdict = rec["gate"]["sources"]["bundle"]["conditions"]
    assert verdict["high"]["passed"] and verdict["nominal"]["passed"]
    assert not verdict["low"]["passed"] and "recall >= 0.8" in verdict["low"]["problems"][0]
    assert [sig["payload"]["purpose"] for sig in v["signatures"]] == ["registration"]
    assert set(v["files"]) == {"manifest.json", "model.onnx", "weights.npy"}
    # the second version's parent is the first; the same bundle twice is refused
    second = registry.register(tokens["dev"], make_export(tmp_path / "b", seed=1), "pump")
    assert registry.version(second["ref"])["parent"] == "pump:1"
    with pytest.raises(RegistryError, match="already pump:1"):
        registry.register(tokens["dev"], bundle, "pump")


def test_the_whole_promotion_path_and_superseding(reg, tmp_path, clock):
    registry, tokens = reg
    registry.register(tokens["dev"], make_export(tmp_path / "a"), "pump")
    to_canary(registry, tokens, clock)
    clock.advance(hours=49)
    registry.record_rollout_outcome(tokens["ops"], "pump:1", "site-a", "canary", True, {})
    registry.review(tokens["rev1"], "pump:1", "approve")
    registry.review(tokens["rev2"], "pump:1", "approve", "looks right")
    registry.promote(tokens["ops"], "pump:1", "site-a", "production")
    assert registry.assignments("site-a")["pump"]["production"]["version"] == "pump:1"
    # version 2 reaches production: version 1 is archived there
    registry.register(tokens["dev2"], make_export(tmp_path / "b", seed=2), "pump")
    to_canary(registry, tokens, clock, "pump:2")
    clock.advance(hours=49)
    registry.record_rollout_outcome(tokens["ops"], "pump:2", "site-a", "canary", True, {})
    for reviewer in ("rev1", "rev2"):
        registry.review(tokens[reviewer], "pump:2", "approve")
    registry.promote(tokens["ops"], "pump:2", "site-a", "production")
    now = registry.assignments("site-a")["pump"]
    assert set(now) == {"production"} and now["production"]["version"] == "pump:2"
    assert registry.version("pump:1")["current_stages"] == {"site-a": "archived"}
    purposes = [x["payload"].get("stage") for x in registry.version("pump:2")["signatures"]]
    assert purposes == [None, "shadow", "canary", "production"]
    # rollback: an archived version returns to a stage it held (gate and approvals still apply)
    registry.promote(tokens["ops"], "pump:1", "site-a", "production", "rollback")
    assert registry.assignments("site-a")["pump"]["production"]["version"] == "pump:1"
    assert registry.verify_audit().ok


REFUSALS = []  # (case, code, message) of every refusal tried, for the closing report


def _record(case: str, err: Refused) -> None:
    REFUSALS.append((case, err.code, err.message))


def test_every_refusal_names_its_reason(reg, tmp_path, clock):
    registry, tokens = reg
    bad_gate = make_export(tmp_path / "g", seed=3, recall={"high": 0.6, "low": 0.9, "nominal": 0.9})
    no_gate = make_export(tmp_path / "n", seed=4, gate=None)
    registry.register(tokens["dev"], make_export(tmp_path / "a"), "pump")
    registry.register(tokens["dev"], bad_gate, "pump")
    registry.register(tokens["dev"], no_gate, "pump")
    own = registry.register(tokens["dev_rev"], make_export(tmp_path / "s", seed=6), "pump")["ref"]
    cases = [
        (
            "a reviewer registers",
            "wrong_role",
            lambda: registry.register(tokens["rev1"], make_export(tmp_path / "r", seed=5), "pump"),
        ),
        (
            "self-approval",
            "self_approval",
            lambda: registry.review(tokens["dev_rev"], own, "approve"),
        ),
        (
            "developer approves",
            "wrong_role",
            lambda: registry.review(tokens["dev2"], "pump:1", "approve"),
        ),
        (
            "reviewer promotes",
            "wrong_role",
            lambda: registry.promote(tokens["rev1"], "pump:1", "site-a", "shadow"),
        ),
        ("no token", "no_token", lambda: registry.promote(None, "pump:1", "site-a", "shadow")),
        (
            "unknown token",
            "unknown_token",
            lambda: registry.promote("pmr_" + "x" * 43, "pump:1", "site-a", "shadow"),
        ),
        (
            "gate failed in a target condition",
            "gate_failed",
            lambda: registry.promote(tokens["ops"], "pump:2", "site-a", "shadow"),
        ),
        (
            "no gate recorded",
            "missing_gate",
            lambda: registry.promote(tokens["ops"], "pump:3", "site-a", "shadow"),
        ),
        (
            "skipping a stage",
            "skipped_stage",
            lambda: registry.promote(tokens["ops"], "pump:1", "site-a", "production"),
        ),
    ]
    for case, code, call in cases:
        err = refusal(call)
        assert err.code == code, (case, err.message)
        _record(case, err)
    # the gate on a condition the target does not run does not matter
    registry.add_target(tokens["ops"], "site-b", ["low", "nominal"])
    registry.promote(tokens["ops"], "pump:2", "site-b", "shadow")
    # shadow -> canary: period and outcome
    registry.promote(tokens["ops"], "pump:1", "site-a", "shadow")
    err = refusal(registry.promote, tokens["ops"], "pump:1", "site-a", "canary")
    assert err.code == "period_not_elapsed" and "missing" not in err.code
    assert "needs 24 h" in err.message and "no shadow outcome" in err.message
    _record("canary before the shadow period and outcome", err)
    clock.advance(hours=25)
    err = refusal(registry.promote, tokens["ops"], "pump:1", "site-a", "canary")
    assert err.code == "missing_outcome"
    _record("canary without a shadow outcome", err)
    registry.record_rollout_outcome(
        tokens["ops"], "pump:1", "site-a", "shadow", False, {"false_alarms": 40}
    )
    err = refusal(registry.promote, tokens["ops"], "pump:1", "site-a", "canary")
    assert err.code == "failed_outcome" and "false_alarms" in err.message
    _record("canary after a failed shadow outcome", err)
    err = refusal(
        registry.record_rollout_outcome, tokens["ops"], "pump:1", "site-a", "canary", True
    )
    assert err.code == "not_in_stage"
    _record("outcome for a stage the version is not in", err)
    registry.record_rollout_outcome(tokens["ops"], "pump:1", "site-a", "shadow", True, {})
    registry.promote(tokens["ops"], "pump:1", "site-a", "canary")
    clock.advance(hours=49)
    registry.record_rollout_outcome(tokens["ops"], "pump:1", "site-a", "canary", True, {})
    err = refusal(registry.promote, tokens["ops"], "pump:1", "site-a", "production")
    assert err.code == "missing_approvals" and "0 of the 2" in err.message
    _record("production without approvals", err)
    registry.review(tokens["rev1"], "pump:1", "approve")
    err = refusal(registry.promote, tokens["ops"], "pump:1", "site-a", "production")
    assert (
        err.code == "missing_approvals"
        and "1 of the 2 approvals that production needs (rev1)" in err.message
    )
    _record("production with 1 of 2 approvals", err)
    registry.review(tokens["rev2"], "pump:1", "reject", "low-load false alarms")
    err = refusal(registry.promote, tokens["ops"], "pump:1", "site-a", "production")
    assert err.code == "rejected" and "rev2" in err.message
    _record("production after a rejection", err)
    registry.review(tokens["rev2"], "pump:1", "approve", "fixed upstream")
    registry.promote(tokens["ops"], "pump:1", "site-a", "production")
    err = refusal(registry.promote, tokens["ops"], "pump:1", "site-a", "canary")
    assert err.code == "backwards"
    _record("back from production to canary", err)
    # expired and revoked tokens
    clock.advance(days=31)
    err = refusal(registry.review, tokens["rev1"], "pump:2", "approve")
    assert err.code == "expired_token" and "expired at" in err.message
    _record("expired token", err)
    fresh = registry.issue_token(tokens["admin"], "rev1", days=1)
    registry.revoke_token(tokens["admin"], fresh[:12])
    err = refusal(registry.review, fresh, "pump:2", "approve")
    assert err.code == "revoked_token"
    _record("revoked token", err)
    err = refusal(registry.issue_token, tokens["admin"], "rev1", days=365)
    assert err.code == "token_lifetime"
    _record("token longer than policy allows", err)
    # every refusal is in the audit trail with its code, and the chain is intact
    refused = [e for e in registry.audit_entries(limit=1000) if e["action"] == "refused"]
    assert len(refused) >= len(REFUSALS)
    assert {e["after"]["code"] for e in refused} >= {code for _, code, _ in REFUSALS}
    assert registry.verify_audit().ok
    (tmp_path / "refusals.json").write_text(json.dumps(REFUSALS, indent=1))


def test_tampered_bundle_is_refused_at_registration(reg, tmp_path):
    registry, tokens = reg
    bundle = make_export(tmp_path / "a")
    with open(bundle / "model.onnx", "ab") as f:
        f.write(b"\0")
    err = refusal(registry.register, tokens["dev"], bundle, "pump")
    assert err.code == "tampered_bundle" and "modified or corrupted" in err.message
    _record("registering a tampered bundle", err)
    assert registry.versions() == []


def test_versions_are_immutable_in_the_database(reg, tmp_path):
    registry, tokens = reg
    registry.register(tokens["dev"], make_export(tmp_path / "a"), "pump")
    for statement in (
        s.versions.update().values(author="mallory"),
        s.versions.delete(),
        s.audit.delete().where(s.audit.c.seq == 1),
    ):
        with (
            pytest.raises(sa.exc.DatabaseError, match="append-only"),
            registry.engine.begin() as conn,
        ):
            conn.execute(statement)


def test_bad_inputs_name_the_problem(reg, tmp_path):
    registry, tokens = reg
    with pytest.raises(NotFound, match="no version pump:9"):
        registry.version("pump:9")
    with pytest.raises(RegistryError, match="MODEL:NUMBER"):
        registry.version("pump")
    with pytest.raises(RegistryError, match="roles are"):
        registry.add_user(tokens["admin"], "x", "superuser")
    with pytest.raises(RegistryError, match="declare the operating conditions"):
        registry.add_target(tokens["ops"], "site-c", [])
    registry.register(tokens["dev"], make_export(tmp_path / "a"), "pump")
    with pytest.raises(NotFound, match="no target 'nowhere'"):
        registry.promote(tokens["ops"], "pump:1", "nowhere", "shadow")
    with pytest.raises(RegistryError, match="stage 'prod'"):
        registry.promote(tokens["ops"], "pump:1", "site-a", "prod")
    with pytest.raises(RegistryError, match=r"bundle folder .* not found"):
        registry.register(tokens["dev"], tmp_path / "missing", "pump")


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"stages": {"production": {"approvals": -1}}}, "approvals must be a whole number"),
        ({"stages": {"prod": {}}}, "rules exist for shadow, canary, production"),
        ({"stages": {"canary": {"wait": 3}}}, "unknown key"),
        ({"roles": {"promote": ["boss"]}}, "must be a list of roles"),
        ({"rules": {}}, "unknown section"),
        ({"tokens": {"max_days": 0}}, "max_days"),
    ],
)
def test_bad_policy_is_refused_with_the_key(raw, message):
    with pytest.raises(RegistryError, match=message):
        parse_policy(raw, "policy.toml")


def test_device_reports_keep_the_last_and_audit_changes(reg, tmp_path, clock):
    registry, tokens = reg
    registry.register(tokens["dev"], make_export(tmp_path / "a"), "pump")
    digest = registry.version("pump:1")["manifest_sha256"]
    for state in ("downloading", "running", "running"):
        clock.advance(minutes=1)
        registry.report_device(tokens["edge"], "pump-7", "site-a", state, "pump:1", digest)
    report = registry.report_device(
        tokens["edge"], "pump-8", "site-a", "running", "pump:1", "f" * 64
    )
    assert report["matches_registry"] is False
    devices = {d["device_id"]: d for d in registry.devices("site-a")}
    assert devices["pump-7"]["state"] == "running" and devices["pump-7"]["version"] == "pump:1"
    events = [e for e in registry.audit_entries() if e["action"] == "device.report"]
    assert len(events) == 3  # two changes on pump-7 (the repeat is not an event), one on pump-8
    err = refusal(registry.report_device, tokens["dev"], "pump-7", "site-a", "running")
    assert err.code == "wrong_role"


def test_history_answers_what_ran_when_and_who_approved(reg, tmp_path, clock):
    from plantml.registry.history import history

    registry, tokens = reg
    registry.register(tokens["dev"], make_export(tmp_path / "a"), "pump")
    before = (clock.now - timedelta(minutes=1)).isoformat()
    to_canary(registry, tokens, clock)
    clock.advance(hours=49)
    registry.record_rollout_outcome(tokens["ops"], "pump:1", "site-a", "canary", True, {})
    registry.review(tokens["rev1"], "pump:1", "approve", "ok")
    registry.review(tokens["rev2"], "pump:1", "approve")
    registry.promote(tokens["ops"], "pump:1", "site-a", "production")
    during_canary = (clock.now - timedelta(hours=1)).isoformat()
    clock.advance(hours=1)
    assert history(registry, "site-a", before)["models"] == {}
    then = history(registry, "site-a", during_canary)["models"]["pump"]
    assert set(then) == {"canary"} and then["canary"]["approved_by"] == []
    now = history(registry, "site-a", clock.now.isoformat())["models"]["pump"]["production"]
    assert now["data_fingerprint"] == "fp-0" and now["git_commit"] == "abc123"
    assert [a["reviewer"] for a in now["approved_by"]] == ["rev1", "rev2"]


def test_model_card_has_the_model_card_toolkit_fields(reg, tmp_path):
    from plantml.registry.cards import card_markdown

    registry, tokens = reg
    registry.register(
        tokens["dev"],
        make_export(tmp_path / "a", recall={"high": 0.9, "low": 0.7, "nominal": 0.9}),
        "pump",
        intended_use="pump failure within 24 h on site A",
        limitations=["no winter data"],
    )
    registry.review(tokens["rev1"], "pump:1", "approve", "fine")
    card = registry.card("pump:1")
    assert {"model_details", "model_parameters", "quantitative_analysis", "considerations"} <= set(
        card
    )
    assert card["considerations"]["use_cases"] == ["pump failure within 24 h on site A"]
    limits = card["considerations"]["limitations"]
    assert "no winter data" in limits and any(
        "gate not passed in condition 'low'" in x for x in limits
    )
    metrics = card["quantitative_analysis"]["performance_metrics"]
    low = [
        m
        for m in metrics
        if m["slice"] == "low" and m["type"] == "recall" and m["confidence_interval"]
    ]
    assert low[0]["confidence_interval"] == pytest.approx(
        {"lower_bound": 0.65, "upper_bound": 0.74}
    )
    text = card_markdown(card)
    assert "## Evaluation per operating condition" in text and "rev1 approved: fine" in text
    assert "[0.65, 0.74]" in text


def test_wandb_run_is_recorded_and_linking_offline_is_skipped_with_a_note(
    reg, tmp_path, monkeypatch
):
    from plantml.registry.wandb_link import link_bundle

    registry, tokens = reg
    registry.register(tokens["dev"], make_export(tmp_path / "a", seed=7, wandb=True), "pump")
    info = registry.version("pump:1")["record"]["wandb"]
    assert info["run_id"] == "run7abc" and info["mode"] == "offline"
    assert info["checkpoint_artifact"] == "model-run7abc:best" and info["project"] == "plantml"
    monkeypatch.delenv("WANDB_MODE", raising=False)
    outcome = link_bundle(info, tmp_path, "pump", 1)
    assert not outcome["linked"] and "logged offline" in outcome["note"]
    monkeypatch.setenv("WANDB_MODE", "offline")
    assert (
        "WANDB_MODE=offline" in link_bundle({**info, "mode": "online"}, tmp_path, "pump", 1)["note"]
    )
    assert registry.version("pump:1")["record"]["card"]["model_details"]["references"]
