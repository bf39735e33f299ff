"""The review page: server-rendered HTML over the same library calls as the API.

``/login`` takes a token (POST form) and opens a session; ``/`` lists versions per model
(candidates first) and what each target runs; ``/versions/{model}/{n}`` shows a version's
card, per-condition metrics against the current production version, gate, lineage, reviews,
stages and audit entries, with approve / reject (reviewers) and promote (operators) forms.
Forms are POSTs with the session's CSRF token.
"""

from __future__ import annotations

from datetime import datetime
from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from jinja2 import Environment, PackageLoader, select_autoescape

from plantml.evaluation.names import HEADLINE, HIGHER_IS_WORSE
from plantml.registry.cards import card_markdown
from plantml.registry.errors import Refused, RegistryError
from plantml.registry.policy import STAGES
from plantml.registry.server.sessions import COOKIE, Sessions, csrf_problem

ENV = Environment(
    loader=PackageLoader("plantml.registry.server", "templates"), autoescape=select_autoescape()
)


def _comparison(reg, version: dict) -> list[dict]:
    """The version's headline metric per condition next to each target's production version."""
    record = version["record"]
    kind = record["bundle"]["task"]["kind"]
    metric = HEADLINE.get(kind, "f1")
    mine = (record.get("metrics") or {}).get("bundle", {}).get("by_condition") or {}
    out = []
    for target in reg.targets():
        prod = reg.assignments(target["name"]).get(version["model"], {}).get("production")
        if prod is None or prod["number"] == version["number"]:
            continue
        other = reg.version(prod["version"])["record"]
        theirs = (other.get("metrics") or {}).get("bundle", {}).get("by_condition") or {}
        rows = []
        for cond in sorted(set(mine) | set(theirs)):
            a, b = (mine.get(cond) or {}).get(metric), (theirs.get(cond) or {}).get(metric)
            better = None
            if a is not None and b is not None:
                better = a < b if metric in HIGHER_IS_WORSE else a > b
            rows.append(
                {
                    "condition": cond,
                    "this": a,
                    "production": b,
                    "better": better,
                    "in_target": cond in target["conditions"],
                }
            )
        out.append(
            {
                "target": target["name"],
                "production": prod["version"],
                "metric": metric,
                "rows": rows,
            }
        )
    return out


def _metric_table(record: dict) -> tuple[list[str], list[dict]]:
    """Per-condition rows of the bundle metrics, with training intervals where recorded."""
    bundle = (record.get("metrics") or {}).get("bundle") or {}
    training = (record.get("metrics") or {}).get("training") or {}
    split = bundle.get("split")
    tcond = (training.get("by_condition") or {}).get(split) or {}
    kind = record["bundle"]["task"]["kind"]
    names = {"rul": ["rmse", "mae", "bias"], "class": ["accuracy", "macro_f1"]}.get(
        kind, ["recall", "precision", "f1", "false_alarms_per_1000"]
    )
    rows = []
    for cond, values in [
        ("overall", bundle.get("overall") or {}),
        *(bundle.get("by_condition") or {}).items(),
    ]:
        ci = (tcond.get(cond) or {}).get("ci") or {}
        rows.append(
            {
                "condition": cond,
                "n": values.get("n"),
                "assets": values.get("assets"),
                "values": [(values.get(m), ci.get(m)) for m in names],
            }
        )
    return names, rows


def page_routes(app: FastAPI, reg, secure_cookies: bool) -> None:
    sessions = Sessions()

    def render(name: str, status: int = 200, **context) -> HTMLResponse:
        return HTMLResponse(ENV.get_template(name).render(**context), status_code=status)

    def session_of(request: Request):
        return sessions.get(request.cookies.get(COOKIE))

    def own_origin(request: Request) -> str:
        return f"{request.url.scheme}://{request.headers.get('host', request.url.netloc)}"

    async def checked_form(request: Request, subject: str, action: str):
        """(session, form) of a legitimate POST, or the refusal page."""
        session = session_of(request)
        if session is None:
            return None, None, RedirectResponse("/login", status_code=303)
        form = await request.form()
        problem = csrf_problem(
            session, form.get("csrf"), request.headers.get("origin"), own_origin(request)
        )
        if problem:
            reg.audit_refusal(session.user, action, subject, "csrf", problem)
            return (
                None,
                None,
                render("error.html", 403, session=session, message=f"refused: {problem}"),
            )
        return session, form, None

    @app.get("/login", response_class=HTMLResponse)
    def login_form(request: Request):
        return render("login.html", session=None, error=None)

    @app.post("/login")
    async def login(request: Request):
        form = await request.form()
        token = str(form.get("token") or "").strip()
        try:
            actor = reg.authenticate(token, "read")
        except Refused as exc:
            return render("login.html", 401, session=None, error=exc.message)
        expires = datetime.fromisoformat(actor.token_expires).timestamp()
        sid = sessions.create(token, actor.name, actor.roles, expires)
        response = RedirectResponse("/", status_code=303)
        response.set_cookie(
            COOKIE, sid, httponly=True, samesite="strict", secure=secure_cookies, path="/"
        )
        return response

    @app.post("/logout")
    async def logout(request: Request):
        _, _, refusal = await checked_form(request, "session", "logout")
        if refusal:
            return refusal
        sessions.drop(request.cookies.get(COOKIE))
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(COOKIE, path="/")
        return response

    @app.get("/", response_class=HTMLResponse)
    def index(request: Request):
        session = session_of(request)
        if session is None:
            return RedirectResponse("/login", status_code=303)
        versions = reg.versions()
        candidates = [
            v
            for v in versions
            if not any(s in ("production", "archived") for s in v["current_stages"].values())
        ]
        targets = [{**t, "assignments": reg.assignments(t["name"])} for t in reg.targets()]
        return render(
            "index.html", session=session, versions=versions, candidates=candidates, targets=targets
        )

    @app.get("/versions/{model}/{number}", response_class=HTMLResponse)
    def version_page(model: str, number: int, request: Request, message: str | None = None):
        session = session_of(request)
        if session is None:
            return RedirectResponse("/login", status_code=303)
        ref = f"{model}:{number}"
        version = reg.version(ref)
        card = reg.card(ref)
        names, rows = _metric_table(version["record"])
        return render(
            "version.html",
            session=session,
            v=version,
            card=card,
            card_md=card_markdown(card),
            names=names,
            rows=rows,
            comparison=_comparison(reg, version),
            audit=reg.audit_entries(f"version:{ref}", 50),
            targets=reg.targets(),
            stages=[s for s in STAGES if s != "candidate"],
            message=message,
            can_review=reg.policy.may("review", set(session.roles)),
            can_promote=reg.policy.may("promote", set(session.roles)),
        )

    async def act(request: Request, model: str, number: int, action: str, call):
        ref = f"{model}:{number}"
        session, form, refusal = await checked_form(request, f"version:{ref}", action)
        if refusal:
            return refusal
        try:
            message = call(session, form, ref)
        except (Refused, RegistryError) as exc:
            text = (
                f"refused ({exc.code}): {exc.message}"
                if isinstance(exc, Refused)
                else f"error: {exc}"
            )
            return render(
                "error.html", 403, session=session, message=text, back=f"/versions/{model}/{number}"
            )
        return RedirectResponse(
            f"/versions/{model}/{number}?message={quote(message)}", status_code=303
        )

    @app.post("/versions/{model}/{number}/review")
    async def review(model: str, number: int, request: Request):
        def call(session, form, ref):
            decision = str(form.get("decision"))
            reg.review(session.token, ref, decision, str(form.get("comment") or ""))
            return f"{ref} {decision}d by {session.user}"

        return await act(request, model, number, "review", call)

    @app.post("/versions/{model}/{number}/promote")
    async def promote(model: str, number: int, request: Request):
        def call(session, form, ref):
            result = reg.promote(
                session.token,
                ref,
                str(form.get("target")),
                str(form.get("stage")),
                str(form.get("reason") or ""),
            )
            return f"{ref} at {result['target']}: {result['from']} -> {result['to']}"

        return await act(request, model, number, "promote", call)
