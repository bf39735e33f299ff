"""The review page in real headless Chromium (Debian's /usr/bin/chromium, driven by Playwright).

A reviewer logs in with a token, opens the candidate, approves it; an operator promotes it
and sees the stage change and the audit entries; a user without the reviewer role, a form
posted with a wrong CSRF token and a cross-site form are refused.
"""

from __future__ import annotations

import shutil
import threading
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.integration.test_registry_services import serve
from tests.postgres import free_port
from tests.registry_helpers import make_export, make_registry

pytestmark = pytest.mark.slow
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
]


@pytest.fixture
def site(tmp_path):
    if not shutil.which("chromium"):
        pytest.skip("chromium not installed (apt-get install -y chromium)")
    policy = {
        "stages": {
            "canary": {"min_hours_in_previous": 0, "outcome_required": False},
            "production": {"min_hours_in_previous": 0, "outcome_required": False, "approvals": 1},
        }
    }
    registry, tokens = make_registry(tmp_path / "home", policy=policy)
    (tmp_path / "home" / "policy.toml").write_text(
        "[stages.canary]\nmin_hours_in_previous = 0\noutcome_required = false\n"
        "[stages.production]\nmin_hours_in_previous = 0\noutcome_required = false\napprovals = 1\n"
    )
    registry.register(tokens["dev"], make_export(tmp_path / "a"), "pump")
    for stage in ("shadow", "canary"):
        registry.promote(tokens["ops"], "pump:1", "site-a", stage)
    port = free_port()
    proc = serve(tmp_path / "home", port, tmp_path / "server.log")
    yield registry, tokens, f"http://127.0.0.1:{port}", tmp_path
    proc.terminate()
    proc.wait(timeout=30)


def attacker_site(folder, target: str) -> tuple[ThreadingHTTPServer, str]:
    """Another origin whose page auto-submits a reject form to the registry."""
    folder.mkdir()
    (folder / "index.html").write_text(
        f'<form method="post" action="{target}/versions/pump/1/review">'
        '<input name="decision" value="reject"><input name="comment" value="forged"></form>'
        "<script>document.forms[0].submit()</script>"
    )
    server = ThreadingHTTPServer(
        ("127.0.0.1", free_port()), partial(SimpleHTTPRequestHandler, directory=str(folder))
    )
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/index.html"


def test_review_page_in_chromium(site):
    from playwright.sync_api import sync_playwright

    registry, tokens, base, tmp = site
    with sync_playwright() as p:
        browser = p.chromium.launch_persistent_context(
            str(tmp / "profile"), executable_path=CHROMIUM, headless=True, args=ARGS
        )
        page = browser.new_page()

        def login(user: str) -> None:
            browser.clear_cookies()
            page.goto(f"{base}/login")
            page.fill("#token", tokens[user])
            page.click("#login")
            assert page.inner_text("#user") == user

        # a reviewer approves the candidate
        login("rev1")
        page.click("#candidates a:text('pump:1')")
        assert page.inner_text("#ref") == "pump:1"
        assert "recall" in page.inner_text("#metrics") and "passed" in page.inner_text("#gate")
        page.fill("#comment", "per-condition recall fine")
        page.click("#approve")
        assert "pump:1 approved by rev1" in page.inner_text("#message")
        assert "per-condition recall fine" in page.inner_text("#reviews")
        # a wrong CSRF token from the page itself is refused
        status = page.evaluate(
            """async () => { const body = new URLSearchParams({decision: 'reject', csrf: 'forged'});
               const r = await fetch('/versions/pump/1/review', {method: 'POST', body}); return [r.status, await r.text()]; }"""
        )
        assert status[0] == 403 and "CSRF token is wrong" in status[1]
        # a cross-site page posting a form with the reviewer's cookie is refused
        server, evil = attacker_site(tmp / "evil", base)
        try:
            page.goto(evil)
            page.wait_for_selector("#error")
            assert "cross-site request from http://127.0.0.1" in page.inner_text("#error")
        finally:
            server.shutdown()
        assert [r["decision"] for r in registry.version("pump:1")["reviews"]] == ["approve"]
        # a user without the reviewer role has no form, and a hand-made post is refused
        login("dev2")
        page.goto(f"{base}/versions/pump/1")
        assert page.query_selector("#approve") is None
        status = page.evaluate(
            """async () => { const csrf = document.querySelector('input[name=csrf]').value;
               const body = new URLSearchParams({decision: 'approve', csrf});
               const r = await fetch('/versions/pump/1/review', {method: 'POST', body}); return [r.status, await r.text()]; }"""
        )
        assert status[0] == 403 and "refused (wrong_role)" in status[1]
        # an operator promotes: the stage changes and the audit trail shows it
        login("ops")
        page.goto(f"{base}/versions/pump/1")
        page.select_option("#target", "site-a")
        page.select_option("#stage", "production")
        page.click("#promote")
        assert "canary -> production" in page.inner_text("#message")
        stages = page.inner_text("#stages")
        assert "production" in stages and "current" in stages
        audit = page.inner_text("#audit")
        assert "promote" in audit and "approve" in audit and "refused" in audit
        page.goto(base + "/")
        assert "pump:1" in page.inner_text("#targets")
        browser.close()
    assert registry.assignments("site-a")["pump"]["production"]["version"] == "pump:1"
    log = (tmp / "server.log").read_text()
    assert not any(token in log for token in tokens.values())
