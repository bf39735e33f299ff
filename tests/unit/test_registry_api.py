"""The HTTP API and the review page's rules, in process (FastAPI's test client)."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient

from plantml.edge.signature import load_trusted_keys, verify_signed_bundle
from plantml.registry.bundles import extract_archive
from plantml.registry.server import create_app
from tests.registry_helpers import make_export, make_registry

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture
def api(tmp_path):
    registry, tokens = make_registry(
        tmp_path / "home",
        policy={
            "stages": {
                "canary": {"min_hours_in_previous": 0, "outcome_required": False},
                "production": {
                    "min_hours_in_previous": 0,
                    "outcome_required": False,
                    "approvals": 1,
                },
            }
        },
    )
    registry.register(tokens["dev"], make_export(tmp_path / "a"), "pump")
    client = TestClient(create_app(registry), base_url="http://127.0.0.1:8765")
    return client, registry, tokens


def auth(token):
    return {"Authorization": f"Bearer {token}"}


def test_api_reads_need_a_valid_token(api):
    client, _, tokens = api
    assert client.get("/api/v1/models").status_code == 401
    bad = client.get("/api/v1/models", headers=auth("pmr_" + "y" * 43))
    assert bad.status_code == 401 and bad.json()["error"] == "unknown_token"
    ok = client.get("/api/v1/models", headers=auth(tokens["edge"]))
    assert ok.json() == {"models": ["pump"]}
    assert client.get("/api/v1/versions/pump/9", headers=auth(tokens["edge"])).status_code == 404


def test_api_rollout_flow_and_device_download(api, tmp_path):
    client, registry, tokens = api
    r = client.post(
        "/api/v1/versions/pump/1/reviews", headers=auth(tokens["dev"]), json={"decision": "approve"}
    )
    assert r.status_code == 403 and r.json()["error"] == "wrong_role"
    r = client.post(
        "/api/v1/versions/pump/1/reviews",
        headers=auth(tokens["rev1"]),
        json={"decision": "approve", "comment": "ok"},
    )
    assert r.status_code == 200 and r.json()["reviewer"] == "rev1"
    for stage in ("shadow", "canary", "production"):
        r = client.post(
            "/api/v1/versions/pump/1/promotions",
            headers=auth(tokens["ops"]),
            json={"target": "site-a", "stage": stage},
        )
        assert r.status_code == 200, r.text
    r = client.post(
        "/api/v1/versions/pump/1/outcomes",
        headers=auth(tokens["ops"]),
        json={"target": "site-a", "stage": "production", "passed": True, "evidence": {"f1": 0.8}},
    )
    assert r.status_code == 200
    now = client.get(
        "/api/v1/devices/pump-7/assignment",
        params={"target": "site-a"},
        headers=auth(tokens["edge"]),
    ).json()
    production = now["assignments"]["pump"]["production"]
    assert production["version"] == "pump:1" and now["last_report"] is None
    archive = client.get("/api/v1/versions/pump/1/bundle", headers=auth(tokens["edge"]))
    assert (
        archive.status_code == 200
        and archive.headers["x-manifest-sha256"] == production["manifest_sha256"]
    )
    folder = extract_archive(archive.content, tmp_path / "device")
    bundle, _ = verify_signed_bundle(folder, load_trusted_keys(registry.trusted_dir), "promotion")
    assert bundle.name == "pump-int8"
    r = client.post(
        "/api/v1/devices/pump-7/reports",
        headers=auth(tokens["edge"]),
        json={
            "target": "site-a",
            "state": "running",
            "version": "pump:1",
            "manifest_sha256": production["manifest_sha256"],
        },
    )
    assert r.status_code == 200 and r.json()["matches_registry"]
    devices = client.get("/api/v1/devices", headers=auth(tokens["ops"])).json()["devices"]
    assert [(d["device_id"], d["state"]) for d in devices] == [("pump-7", "running")]
    card = client.get("/api/v1/versions/pump/1/card", headers=auth(tokens["edge"]))
    assert card.text.startswith("# Model card: pump:1")
    actions = [
        e["action"]
        for e in client.get("/api/v1/audit", headers=auth(tokens["ops"])).json()["entries"]
    ]
    assert actions[:3] == ["device.report", "outcome", "promote"]
    assert (
        client.post(
            "/api/v1/devices/pump-7/reports", headers=auth(tokens["edge"]), content=b"[1]"
        ).status_code
        == 400
    )


def login(client, token):
    r = client.post("/login", data={"token": token}, follow_redirects=False)
    assert r.status_code == 303
    return re.search(r'name="csrf" value="([^"]+)"', client.get("/versions/pump/1").text)[1]


def test_review_page_forms_need_the_csrf_token(api):
    client, registry, tokens = api
    assert client.get("/", follow_redirects=False).headers["location"] == "/login"
    r = client.post("/login", data={"token": "pmr_" + "z" * 43})
    assert r.status_code == 401 and "not known" in r.text
    csrf = login(client, tokens["rev1"])
    page = client.get("/versions/pump/1").text
    assert tokens["rev1"] not in page and "approve" in page
    for data, why in (
        (({"decision": "approve"}), "missing"),
        ({"decision": "approve", "csrf": "x" * 43}, "wrong"),
    ):
        r = client.post("/versions/pump/1/review", data=data)
        assert r.status_code == 403 and f"CSRF token is {why}" in r.text
    r = client.post(
        "/versions/pump/1/review",
        data={"decision": "approve", "csrf": csrf},
        headers={"Origin": "http://evil.example"},
    )
    assert r.status_code == 403 and "cross-site request from http://evil.example refused" in r.text
    assert registry.version("pump:1")["reviews"] == []
    r = client.post(
        "/versions/pump/1/review",
        data={"decision": "approve", "csrf": csrf},
        headers={"Origin": "http://127.0.0.1:8765"},
    )
    assert r.status_code == 200 and "pump:1 approved by rev1" in r.text
    codes = [e["after"]["code"] for e in registry.audit_entries() if e["action"] == "refused"]
    assert codes.count("csrf") == 3


def test_review_page_refuses_a_reviewer_without_the_role(api):
    client, _, tokens = api
    csrf = login(client, tokens["dev2"])
    assert 'id="approve"' not in client.get("/versions/pump/1").text
    r = client.post("/versions/pump/1/review", data={"decision": "approve", "csrf": csrf})
    assert r.status_code == 403 and "refused (wrong_role)" in r.text
